"""The site tables in the configuration dump that ``redundancy.configsync`` replicates to the standby.

Applied after users, devices and tokens (their foreign keys are deferred to the end of the
transaction on PostgreSQL and SQLite alike), grants last.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from bms.sites.models import Site, SiteAccess, SiteGrant, TokenSite
from redundancy.configrows import dump_tables

SITE_TABLES: tuple[tuple[str, type[models.Model], tuple[str, ...]], ...] = (
    ("sites", Site, ("name",)),
    ("site_access", SiteAccess, ()),
    ("site_grants", SiteGrant, ()),
    ("token_sites", TokenSite, ()),
)
SITE_MODELS = [model for _key, model, _unique in SITE_TABLES]


def dump_sites() -> dict[str, list[dict[str, Any]]]:
    """The sites and who may see them as plain data by dump key (call in a transaction)."""
    return dump_tables(SITE_TABLES)
