"""Sites (buildings) and who may see them.

A :class:`Site` owns devices (and through them their points), schedules and
logic rules. A user is either unrestricted (no :class:`SiteAccess` row, or
one with ``all_sites``: every site, also those made later) or restricted to
the sites granted (:class:`SiteGrant`); a superuser sees every site. A token
may be narrowed further to some of its user's sites (:class:`TokenSite`);
it never sees more than its user. Deleting a site that is still granted, or
that still owns anything, is refused (``PROTECT``): a grant that vanished
with its site would silently widen a token or a user to every site.

Sites, access and grants are configuration and travel to the standby with the
users (:mod:`bms.sites.replication`). The rules that filter by them are in
:mod:`bms.sites.scope`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from bms.points.validators import POINT_NAME_VALIDATOR

DEFAULT_SITE = "main"


class Site(models.Model):
    """A building (or part of a campus) that owns devices, points, schedules and rules."""

    name = models.CharField(max_length=64, unique=True, validators=[POINT_NAME_VALIDATOR])
    title = models.CharField(max_length=128, blank=True, help_text="what operators call it, e.g. 'Town hall'")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.title or self.name


def default_site_id() -> int:
    """The primary key of the default site (``main``), made if missing: what a device gets when none is said."""
    site, _ = Site.objects.get_or_create(name=DEFAULT_SITE, defaults={"title": "Main site"})
    return site.pk


def site_owner(related_name: str, help_text: str) -> models.ForeignKey:
    """The ``site`` field of a model a site owns (devices, schedules, rules): required, the default site when not
    said, and a site that still owns one cannot be deleted."""
    return models.ForeignKey(
        "sites.Site", on_delete=models.PROTECT, related_name=related_name, default=default_site_id, help_text=help_text
    )


class SiteAccess(models.Model):
    """Which sites one user may see and act on: every site (``all_sites``) or only those granted."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="site_access")
    all_sites = models.BooleanField(
        default=False, help_text="every site, also those added later; otherwise only the sites granted below"
    )

    class Meta:
        verbose_name = "site access"
        verbose_name_plural = "site access"

    def __str__(self) -> str:
        return f"{self.user}: {'all sites' if self.all_sites else 'granted sites'}"


class SiteGrant(models.Model):
    """One site a restricted user may see (and act on, as far as the user's role allows)."""

    access = models.ForeignKey(SiteAccess, on_delete=models.CASCADE, related_name="grants")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="grants")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["access", "site"], name="site_grant_once")]

    def __str__(self) -> str:
        return f"{self.access.user} → {self.site}"


class TokenSite(models.Model):
    """One site an API token is narrowed to; a token without any sees all of its user's sites."""

    token = models.ForeignKey("tokens.ApiToken", on_delete=models.CASCADE, related_name="sites")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="token_sites")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["token", "site"], name="token_site_once")]

    def __str__(self) -> str:
        return f"bms_{self.token.prefix} → {self.site}"
