"""Inserting a flood of history rows on PostgreSQL: ``COPY`` into a staging table, then one ``INSERT``.

Django's ``bulk_create`` renders and quotes every value in Python (the
client-side binding of psycopg's ``ClientCursor``): about 400 µs of the
engine's database thread per alarm journal row in a 10,000-alarm flood,
holding the interpreter lock the engine loop needs. ``COPY`` sends the rows
in psycopg's own text format, and ``INSERT … SELECT … ON CONFLICT DO
NOTHING`` skips a row whose unique key is there already (the partner's
version of the same row was replicated first) instead of failing the
transaction: its reserved history stamp stays unused, a harmless gap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, models


def copy_new_rows(model: type[models.Model], rows: Sequence[Mapping[str, Any]], returning: str) -> list[Any]:
    """Insert ``rows`` (each a mapping of every concrete non-key field's attname) into ``model``'s table, skipping
    those that clash with a unique key; return the ``returning`` column of the rows inserted. PostgreSQL only; call
    inside a transaction (the staging table is dropped at commit)."""
    if not rows:
        return []
    quote = connection.ops.quote_name
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    json_fields = {field.attname for field in fields if isinstance(field, models.JSONField)}
    names = [field.attname for field in fields]
    columns = ", ".join(quote(field.column) for field in fields)
    table = quote(model._meta.db_table)
    staging = quote(f"{model._meta.db_table}_incoming")
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {staging} ON COMMIT DROP AS SELECT {columns} FROM {table} WITH NO DATA")
        with cursor.copy(f"COPY {staging} ({columns}) FROM STDIN") as copy:
            for row in rows:
                # plain values (str, int, bool, aware datetime, None); JSON fields as JSON text (None: SQL NULL)
                copy.write_row(
                    [
                        (None if row[name] is None else json.dumps(row[name])) if name in json_fields else row[name]
                        for name in names
                    ]
                )
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {staging} ON CONFLICT DO NOTHING "
            f"RETURNING {quote(model._meta.get_field(returning).column)}"
        )
        inserted = [found for (found,) in cursor.fetchall()]
        cursor.execute(f"DROP TABLE {staging}")
    return inserted
