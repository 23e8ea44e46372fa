"""The logic tables in the configuration dump that ``redundancy.configsync`` replicates to the standby.

One table, :class:`~bms.logic.models.Rule`, with plain fields only (text,
numbers, JSON objects of text and numbers), so its rows travel in the
msgpack dump as they are. Its points are named, not keys, so it can be
replaced in any order relative to the point tables; its one foreign key,
``site_id``, travels as the number it is, and ``apply_config`` replaces the
sites after it (a rule may refer to a site still to come: foreign keys are
checked at commit; a site the dump dropped goes only once no rule holds it). :data:`LOGIC_TABLES`
lists ``(dump key, model, unique fields to free before the upsert)`` for
``apply_config``; :func:`dump_logic` gives the rows for ``dump_config``.
Rows are written with ``bulk_create`` there, past ``Rule.save``: the active
node checked them when they were saved, and the points they name arrive in
the same dump.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from bms.logic.models import Rule
from redundancy.configrows import dump_tables

LOGIC_TABLES: tuple[tuple[str, type[models.Model], tuple[str, ...]], ...] = (("logic_rules", Rule, ("name",)),)
LOGIC_MODELS = [model for _key, model, _unique in LOGIC_TABLES]


def dump_logic() -> dict[str, list[dict[str, Any]]]:
    """The logic configuration as plain data by dump key, rows in primary-key order (call in a transaction)."""
    return dump_tables(LOGIC_TABLES)
