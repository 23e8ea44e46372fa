"""A change of sites or of who may see them moves the configuration revision (the standby then takes the dump)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from bms.points.models import ConfigRevision
from bms.sites.models import Site, SiteAccess, SiteGrant, TokenSite


@receiver([post_save, post_delete], sender=Site)
@receiver([post_save, post_delete], sender=SiteAccess)
@receiver([post_save, post_delete], sender=SiteGrant)
@receiver([post_save, post_delete], sender=TokenSite)
def bump_revision(**_kwargs: Any) -> None:
    ConfigRevision.bump()
