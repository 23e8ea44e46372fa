"""The token table in the configuration dump that ``redundancy.configsync`` replicates to the standby.

Plain fields plus the owner's id (users travel first, with their primary
keys), so a script's token works on whichever node is active. Uses are not
here: they are history rows (:class:`~bms.tokens.models.TokenUse`).
"""

from __future__ import annotations

from typing import Any

from django.db import models

from bms.tokens.models import ApiToken
from redundancy.configrows import dump_tables

TOKEN_TABLES: tuple[tuple[str, type[models.Model], tuple[str, ...]], ...] = (
    ("api_tokens", ApiToken, ("prefix", "digest")),
)
TOKEN_MODELS = [model for _key, model, _unique in TOKEN_TABLES]


def dump_tokens() -> dict[str, list[dict[str, Any]]]:
    """The tokens as plain data by dump key, rows in primary-key order (call in a transaction)."""
    return dump_tables(TOKEN_TABLES)
