"""A model's rows read and changed with SQL written once, built back into model instances as the ORM builds them.

For the command path's statements that run for every command (claim, plan,
record the outcome): compiling each of them through the ORM was most of the
engine database thread's CPU per command (about 1 ms a statement against
0.1 ms for the statement itself; bench/logic.py, ADR 0018). The SQL here is
the same on PostgreSQL and SQLite (the embedded default): ``%s`` parameters,
``RETURNING``, ``CASE``; values go in through each field's
``get_db_prep_save`` and come back through the field's and the backend's
converters, exactly as the ORM sends and reads them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, models


class Table:
    """One model's table: quoted names, values prepared for the database, rows built into instances."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        meta = model._meta
        self.fields = {field.name: field for field in meta.concrete_fields}
        self.pk = meta.pk.name
        self._quote = connection.ops.quote_name
        self.name = self._quote(meta.db_table)
        #: every concrete field, in the model's order (what ``Model.from_db`` expects of a whole row)
        self.all = tuple(self.fields)
        self._converters: dict[tuple[str, tuple[str, ...]], list[tuple[int, list, Any]]] = {}
        self._orders: dict[tuple[str, ...], tuple[str, ...]] = {}

    def column(self, name: str) -> str:
        """The quoted column of field ``name`` (a foreign key: its ``_id`` column)."""
        return self._quote(self.fields[name].column)

    def ordered(self, names: Sequence[str]) -> tuple[str, ...]:
        """``names`` in the model's field order: the order ``Model.from_db`` takes a partial row in (worked out
        once per list of names: it is asked at every statement)."""
        key = tuple(names)
        found = self._orders.get(key)
        if found is None:
            found = self._orders[key] = tuple(name for name in self.fields if name in key)
        return found

    def columns(self, names: Sequence[str], prefix: str = "") -> str:
        """``a, b, c`` (``prefix``: a table alias and its dot) for a SELECT or RETURNING list, in the model's
        field order (what :meth:`build` reads)."""
        return ", ".join(prefix + self.column(name) for name in self.ordered(names))

    def prep(self, name: str, value: object) -> object:
        """``value`` as the database takes it for field ``name`` (a datetime on SQLite, JSON on PostgreSQL)."""
        return self.fields[name].get_db_prep_save(value, connection)

    def assignments(self, values: dict[str, object]) -> tuple[str, list[object]]:
        """``a = %s, b = %s`` and its parameters, for an UPDATE's SET."""
        return ", ".join(f"{self.column(name)} = %s" for name in values), [
            self.prep(name, value) for name, value in values.items()
        ]

    def each(self, name: str, values: dict[int, object]) -> tuple[str, list[object]]:
        """A value per row for one UPDATE of many rows (the caller's WHERE holds the rows to ``values``' keys):
        ``CAST(%s AS type)`` for one row, else ``CASE pk WHEN %s THEN CAST(%s AS type) ... END``: each value cast
        to its column's type, as with server-side parameters PostgreSQL would take a bare ``%s`` there for text."""
        cast = self.fields[name].cast_db_type(connection)
        if len(values) == 1:
            [value] = values.values()
            return f"CAST(%s AS {cast})", [self.prep(name, value)]
        params: list[object] = []
        for pk, value in values.items():
            params += [pk, self.prep(name, value)]
        whens = " ".join(f"WHEN %s THEN CAST(%s AS {cast})" for _ in values)
        return f"CASE {self.column(self.pk)} {whens} END", params

    def build(self, rows: Iterable[Sequence[object]], names: Sequence[str] | None = None) -> list[models.Model]:
        """Model instances from ``rows`` of the columns :meth:`columns` listed for ``names`` (default:
        :attr:`all`); the fields not read are deferred (loaded if ever touched), as with ``only()``."""
        names = self.ordered(names or self.all)
        converters = self._converters_of(names)
        attnames = [self.fields[name].attname for name in names]
        instances = []
        for row in rows:
            values = list(row)
            for index, functions, column in converters:
                value = values[index]
                for convert in functions:
                    value = convert(value, column, connection)
                values[index] = value
            instances.append(self.model.from_db(connection.alias, attnames, values))
        return instances

    def _converters_of(self, names: tuple[str, ...]) -> list[tuple[int, list, Any]]:
        """Per column that has any: the backend's converters, then the field's (the ORM's order)."""
        key = (connection.vendor, names)
        found = self._converters.get(key)
        if found is None:
            found = []
            for index, name in enumerate(names):
                column = self.fields[name].get_col(self.model._meta.db_table)
                functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
                if functions:
                    found.append((index, functions, column))
            self._converters[key] = found
        return found


@functools.cache
def table_of(model: type[models.Model]) -> Table:
    """The one :class:`Table` of ``model`` in this process (its orders and converters worked out once)."""
    return Table(model)


def placeholders(count: int) -> str:
    """``%s, %s, ...`` for an ``IN (...)`` of ``count`` values."""
    return ", ".join(["%s"] * count)
