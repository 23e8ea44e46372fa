"""The columns of a configuration table that travel in the configuration dump (``redundancy.configsync``).

Shared by configsync and the apps that add their own tables to the dump
(``bms.schedules.replication``, ``bms.logic.replication``,
``bms.notifications.replication``), so every table is dumped alike.
"""

from __future__ import annotations

from typing import Any

from django.db import models


def plain_fields(model: type[models.Model]) -> list[str]:
    """Every stored column but the primary key (which the dump carries as ``id``), by attribute name."""
    return [field.attname for field in model._meta.concrete_fields if not field.primary_key]


def dump_tables(
    tables: tuple[tuple[str, type[models.Model], tuple[str, ...]], ...],
) -> dict[str, list[dict[str, Any]]]:
    """The rows of ``(dump key, model, unique fields)`` tables as plain data by dump key, in primary-key order.

    Call it in the transaction that reads the rest of the configuration."""
    return {key: list(model.objects.order_by("pk").values("id", *plain_fields(model))) for key, model, _ in tables}
