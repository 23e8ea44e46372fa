"""History replication: every :class:`~bms.history.models.HistoryRow` table, both ways, keyed by its stamp.

The two nodes exchange *cursors*, ``{table: {origin: highest origin_seq stored}}``;
each then sends the other, per table and origin, the rows above the other's
cursor in ``origin_seq`` order, and advances its view of the other's cursor
only when the other acknowledges. Storing is an idempotent upsert on the
row's natural key, so a batch sent twice (a connection lost before the
acknowledgement) changes nothing. New tables (trend samples, the alarm
journal) join by subclassing ``HistoryRow``: nothing here names them.
Blocking functions: run them on the engine's database thread.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import models, transaction
from django.db.models import Max, Q
from django.db.models.constants import OnConflict

from bms.history.models import HistoryRow

BATCH = 500
Cursors = dict[str, dict[str, int]]


def replicated_models() -> dict[str, type[HistoryRow]]:
    """Every concrete history table, by ``app_label.model`` name."""
    return {
        model._meta.label_lower: model
        for model in apps.get_models()
        if issubclass(model, HistoryRow) and not model._meta.abstract
    }


def local_cursors() -> Cursors:
    """What this node holds: per table and origin, the highest ``origin_seq``."""
    cursors: Cursors = {}
    for label, model in replicated_models().items():
        rows = model.objects.values("origin").annotate(top=Max("origin_seq"))
        cursors[label] = {row["origin"]: row["top"] for row in rows}
    return cursors


def _fields(model: type[models.Model]) -> list[models.Field]:
    return [field for field in model._meta.concrete_fields if not field.primary_key]


def rows_after(cursors: Cursors, limit: int = BATCH) -> tuple[list[dict[str, Any]], int]:
    """Rows the peer (holding ``cursors``) lacks, at most ``limit``; and how many are still waiting after them.

    Returns batches as ``{"table", "origin", "rows": [[field values...]], "fields": [...]}``.
    """
    batches: list[dict[str, Any]] = []
    budget = limit
    backlog = 0
    for label, model in replicated_models().items():
        fields = [field.attname for field in _fields(model)]
        have = cursors.get(label, {})
        for origin in model.objects.values_list("origin", flat=True).distinct().order_by("origin"):
            pending = model.objects.filter(origin=origin, origin_seq__gt=have.get(origin, 0))
            rows = list(pending.order_by("origin_seq").values_list(*fields)[:budget]) if budget > 0 else []
            if rows:
                batches.append({"table": label, "origin": origin, "fields": fields, "rows": rows})
                budget -= len(rows)
            if budget <= 0:
                backlog += pending.count() - len(rows)
    return batches, backlog


def store_rows(batch: dict[str, Any]) -> int:
    """Upsert one batch from the peer; return the highest ``origin_seq`` now stored for its table and origin."""
    model = replicated_models().get(batch["table"])
    if model is None:
        raise ValueError(f"unknown history table {batch['table']!r}")
    known = {field.attname: field for field in _fields(model)}
    names = [name for name in batch["fields"] if name in known]
    unknown = set(batch["fields"]) - set(names)
    if unknown:
        raise ValueError(f"history table {batch['table']} has no field(s) {sorted(unknown)}")
    positions = [batch["fields"].index(name) for name in names]
    records = [{name: row[i] for name, i in zip(names, positions, strict=True)} for row in batch["rows"]]
    _drop_dangling_references(model, records)
    key = list(model.NATURAL_KEY)
    with transaction.atomic():
        if key == ["origin", "origin_seq"]:
            _insert_as_sent(model, records, OnConflict.IGNORE)
        else:
            _upsert_newer(model, key, records)
        top = model.objects.filter(origin=batch["origin"]).aggregate(top=Max("origin_seq"))["top"]
    return top or 0


def _version(record: dict[str, Any]) -> tuple[int, str, int]:
    """The order of a mutable row's versions: the later epoch wins; within one, the origin, then its seq.

    Both nodes apply the same order, so concurrent versions of one command
    (the deposed node's and its successor's) converge to the same row on
    both, whatever order they arrive in, and an older version sent back
    (a node's own rows return from its peer) never overwrites a newer one.
    """
    return int(record["epoch"]), str(record["origin"]), int(record["origin_seq"])


def _upsert_newer(model: type[HistoryRow], key: list[str], records: list[dict[str, Any]]) -> None:
    """Mutable rows (commands): insert, or overwrite a stored version only with a newer one."""
    if not records:
        return
    wanted = Q()
    for record in records:
        wanted |= Q(**{name: record[name] for name in key})
    stored = {
        tuple(row[: len(key)]): _version(dict(zip(("epoch", "origin", "origin_seq"), row[len(key) :], strict=True)))
        for row in model.objects.select_for_update().filter(wanted).values_list(*key, "epoch", "origin", "origin_seq")
    }
    newest: dict[tuple, dict[str, Any]] = {}
    for record in records:
        ident = tuple(record[name] for name in key)
        if ident in stored and _version(record) <= stored[ident]:
            continue
        if ident not in newest or _version(record) > _version(newest[ident]):
            newest[ident] = record
    _insert_as_sent(model, list(newest.values()), OnConflict.UPDATE, key)


def _insert_as_sent(
    model: type[HistoryRow], records: list[dict[str, Any]], conflict: OnConflict, key: list[str] | None = None
) -> None:
    """Insert rows with every value exactly as the origin wrote it.

    ``bulk_create`` would run ``pre_save``, which replaces ``auto_now_add``
    times (an audit entry's time, a command's created_at) with this node's
    clock, so the two databases would differ. A raw insert keeps them.
    """
    if not records:
        return
    by_attname = {field.attname: field for field in _fields(model)}
    fields = [by_attname[name] for name in records[0]]
    update = [field for field in fields if field.name not in (key or ())] if key else None
    unique = [model._meta.get_field(name) for name in key] if key else None
    model._base_manager._insert(
        [model(**record) for record in records],
        fields=fields,
        raw=True,
        on_conflict=conflict,
        update_fields=update,
        unique_fields=unique,
    )


def _drop_dangling_references(model: type[models.Model], records: list[dict[str, Any]]) -> None:
    """A reference to a user or point this node does not have (yet) becomes NULL instead of failing the batch."""
    for field in model._meta.concrete_fields:
        if not field.is_relation or not field.null:
            continue
        wanted = {record[field.attname] for record in records if record.get(field.attname) is not None}
        if not wanted:
            continue
        present = set(field.related_model.objects.filter(pk__in=wanted).values_list("pk", flat=True))
        for record in records:
            if record.get(field.attname) is not None and record[field.attname] not in present:
                record[field.attname] = None
