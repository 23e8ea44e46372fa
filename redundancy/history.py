"""History replication: every :class:`~bms.history.models.HistoryRow` table, both ways, keyed by its stamp.

The two nodes exchange *cursors*, ``{table: {origin: highest origin_seq stored}}``;
each then sends the other, per table and origin, the rows above the other's
cursor in ``origin_seq`` order, and advances its view of the other's cursor
only when the other acknowledges. Storing is an idempotent upsert on the
row's natural key, so a batch sent twice (a connection lost before the
acknowledgement) changes nothing. New tables (trend samples, the alarm
journal) join by subclassing ``HistoryRow``: nothing here names them.
Blocking functions: run them on the engine's database thread.

A row that cannot be encoded for the sync link (msgpack refuses it, or it is
larger than a frame may carry) is *quarantined*: recorded in
:class:`~redundancy.models.QuarantinedRow` with an event, and skipped from
then on, so it cannot stop the rows behind it (ADR 0011). The backlog is
what the peer has not acknowledged, counted above its acknowledged cursors.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.apps import apps
from django.db import models, transaction
from django.db.models import Q
from django.db.models.constants import OnConflict

from bms.events.models import Event
from bms.history.models import HistoryRow, OriginCounter
from redundancy import framing
from redundancy.models import QuarantinedRow

log = logging.getLogger(__name__)
#: rows per replication round. 2,000 rather than 500: a round's fixed cost (one query per table and origin, the
#: framing, one transaction on the receiver) made the trend stream of a 100,000-point site (10,000 samples a second)
#: fall behind in a pair; bench/trend_write.py carried 22,000 rows/s with 500 and 39,000-41,000 with 2,000
#: (rounds of 43 ms instead of 21 ms; other history tables are served first and acknowledged before the bulk ones).
BATCH = 2000
#: bulk rows (trend samples) sent and not yet acknowledged, at most, before the sender waits for acknowledgements:
#: without a window the sender ran ahead of a busy receiver by megabytes of socket buffers, acknowledgements came
#: later than the resend delay, and the same samples were sent again and again (bench/scale.py, 100,000 points)
BULK_WINDOW = 2 * BATCH
#: packed bytes of one history message: well below the link's frame limit (16 MiB), so a message always fits
MESSAGE_BYTES = 4 * 1024 * 1024
#: a single row larger than this cannot share a message fairly with others: it is quarantined as too large
ROW_BYTES = 1024 * 1024
QUARANTINE_EVENT = "history_quarantined"
Cursors = dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One replication round: the batches to send, the rows the peer has not acknowledged, rows quarantined."""

    batches: list[dict[str, Any]]
    waiting: dict[tuple[str, str], int] | None  # (table, origin): rows not acknowledged; None: not counted
    quarantined: int


def is_bulk(label: str) -> bool:
    """Is ``label`` a bulk table (trend samples), stored after the others of a round and acknowledged apart?"""
    model = replicated_models().get(label)
    return model is not None and model.BULK


@functools.cache
def replicated_models() -> dict[str, type[HistoryRow]]:
    """Every concrete history table, by ``app_label.model`` name; the bulk ones (``HistoryRow.BULK``) last.

    Made once (the models do not change in a running process): the sender asks per stream on the loop every
    round (:func:`is_bulk`), the receiver per batch. Read-only for callers."""
    found = [model for model in apps.get_models() if issubclass(model, HistoryRow) and not model._meta.abstract]
    return {model._meta.label_lower: model for model in sorted(found, key=lambda model: model.BULK)}


def local_cursors() -> Cursors:
    """What this node holds: per table and origin, the highest ``origin_seq``."""
    cursors: Cursors = {}
    for label, model in replicated_models().items():
        cursors[label] = model.stored_tops()
    return cursors


def _fields(model: type[models.Model]) -> list[models.Field]:
    return [field for field in model._meta.concrete_fields if not field.primary_key]


def rows_after(
    cursors: Cursors, limit: int = BATCH, bulk_limit: int | None = None, count: bool = True
) -> tuple[list[dict[str, Any]], int]:
    """Rows the peer (holding ``cursors``) lacks, at most ``limit``; and how many are still waiting after them.

    ``bulk_limit``: at most that many of them from the bulk tables (trend samples; None: no limit of their own),
    so that the sender can hold the samples back while the peer works through those it has, and still send
    the other tables' rows. ``count`` False: do not count what waits after them (0; the sender counts the
    backlog itself, at most every 0.5 s, ADR 0011).

    Returns batches as ``{"table", "origin", "after", "rows": [[field values...]], "fields": [...]}``;
    ``after`` is the cursor the rows follow, so the receiver can tell a batch that does not continue
    what it holds (an earlier batch was lost) from one that does. Rows that cannot be encoded are
    quarantined and left out; a message never grows beyond :data:`MESSAGE_BYTES`.
    """
    batches: list[dict[str, Any]] = []
    budget = limit
    room = MESSAGE_BYTES
    backlog = 0
    for label, model in replicated_models().items():
        fields = [field.attname for field in _fields(model)]
        have = cursors.get(label, {})
        for origin in model.stored_origins():
            after = have.get(origin, 0)
            pending = _sendable(model, label, origin, after)
            allowed = min(budget, bulk_limit) if model.BULK and bulk_limit is not None else budget
            rows = []
            if allowed > 0 and room > 0:
                rows = list(pending.order_by("origin_seq").values_list(*fields)[:allowed])
            taken = len(rows)
            if rows:
                rows, size, cut = _encodable(label, origin, fields, rows, room)
                room -= size
                if cut:
                    budget = 0  # the message is full: what is left waits for the next round
            if rows:
                batches.append({"table": label, "origin": origin, "after": after, "fields": fields, "rows": rows})
                budget -= taken
                if model.BULK and bulk_limit is not None:
                    bulk_limit -= taken
            if count and (budget <= 0 or taken >= allowed):  # there may be more than was taken
                backlog += model.count_pending(pending, origin, after) - len(rows)
    return batches, backlog


def _sendable(model: type[HistoryRow], label: str, origin: str, after: int) -> models.QuerySet:
    """Rows of one table and origin above ``after``, without the quarantined ones."""
    skipped = QuarantinedRow.objects.filter(table=label, origin=origin, origin_seq__gt=after).values("origin_seq")
    return model.objects.filter(origin=origin, origin_seq__gt=after).exclude(origin_seq__in=skipped)


def _packed_size(rows: list[tuple]) -> int:
    # Packed inside the same nesting as the real message ({"batches": [{"rows": [row]}]}), so a value
    # near msgpack's nesting limit is judged as it will really be sent.
    return len(framing.pack({"t": "history", "batches": [{"rows": rows}]}))


def _encodable(
    label: str, origin: str, fields: list[str], rows: list[tuple], room: int
) -> tuple[list[tuple], int, bool]:
    """The rows that can be sent, their packed size, and whether the message is full (rows were held back).

    The whole batch is packed once; only when that fails or is too large are the rows packed one by
    one, to find and quarantine the bad ones and to stop at the message's size.
    """
    try:
        size = _packed_size(rows)
        if size <= room:
            return rows, size, False
    except Exception:  # msgpack raises OverflowError, ValueError, TypeError, UnicodeEncodeError...
        pass
    seq_at = fields.index("origin_seq")
    kept: list[tuple] = []
    used = 0
    for row in rows:
        try:
            size = _packed_size([row])
        except Exception as exc:
            quarantine(label, origin, int(row[seq_at]), f"cannot be encoded: {type(exc).__name__}: {exc}")
            continue
        if size > ROW_BYTES:
            quarantine(label, origin, int(row[seq_at]), f"too large to send: {size} bytes packed")
            continue
        if used + size > room:
            return kept, used, True
        kept.append(row)
        used += size
    return kept, used, False


def quarantine(label: str, origin: str, origin_seq: int, reason: str) -> bool:
    """Record that a row will not be replicated, with a warning event, once per row; True if it is new."""
    reason = reason[:300]
    with transaction.atomic():
        _, created = QuarantinedRow.objects.get_or_create(
            table=label, origin=origin, origin_seq=origin_seq, defaults={"reason": reason}
        )
        if created:
            Event.objects.create(
                time=datetime.now(UTC),
                kind=QUARANTINE_EVENT,
                source=label[:128],
                severity=Event.WARNING,
                message=f"{label} row {origin}/{origin_seq} is not replicated to the partner: {reason}",
            )
    if created:
        log.warning("history row %s %s/%d quarantined: %s", label, origin, origin_seq, reason)
    return created


def waiting(acked: Cursors) -> dict[tuple[str, str], int]:
    """Per table and origin, the rows the peer has not acknowledged (above its cursor, quarantined ones aside)."""
    streams: dict[tuple[str, str], int] = {}
    for label, model in replicated_models().items():
        have = acked.get(label, {})
        for origin in model.stored_origins():
            after = have.get(origin, 0)
            count = model.count_pending(_sendable(model, label, origin, after), origin, after)
            if count:
                streams[(label, origin)] = count
    return streams


def last_stamp(origin: str) -> int:
    """The last stamp issued to ``origin`` that is committed: every row of it stamped up to here is stored.

    The counter row is updated in the writing transaction and stays locked until its commit (ADR 0006), so a
    plain read sees only stamps whose rows have committed."""
    return OriginCounter.objects.filter(origin=origin).values_list("value", flat=True).first() or 0


def behind(acked: Cursors, origin: str, watermark: int) -> bool:
    """Whether the peer lacks a row of ``origin`` stamped at or below ``watermark`` (quarantined ones aside).

    One index probe (``(origin, origin_seq)``) per table whose acknowledged cursor is below the watermark."""
    for label, model in replicated_models().items():
        after = acked.get(label, {}).get(origin, 0)
        if after < watermark and _sendable(model, label, origin, after).filter(origin_seq__lte=watermark).exists():
            return True
    return False


def lag_probe(acked: Cursors, origin: str, watermark: int | None) -> tuple[int, bool]:
    """``(last_stamp(origin), behind(acked, origin, watermark))`` in one trip; without a watermark (none old
    enough yet) the peer counts as behind."""
    return last_stamp(origin), watermark is None or behind(acked, origin, watermark)


def unacknowledged(acked: Cursors) -> int:
    """Rows the peer has not acknowledged: every row above its acknowledged cursors, quarantined ones aside."""
    return sum(waiting(acked).values())


def outgoing(
    cursors: Cursors,
    acked: Cursors,
    outstanding: bool,
    limit: int = BATCH,
    count: bool = True,
    bulk_limit: int | None = None,
) -> Outgoing:
    """One round of the sender: what to send above ``cursors``, and what waits above ``acked``.

    ``outstanding``: rows were sent that the peer has not acknowledged. Without
    them and with nothing new to send, nothing waits: the rows are not counted
    again (this runs several times a second on an idle pair). ``count`` False:
    leave the rows that wait uncounted (``waiting`` None) unless that is known
    to be nothing; counting asks every table again. ``bulk_limit``: as for :func:`rows_after`.
    """
    batches, _ = rows_after(cursors, limit, bulk_limit, count=False)
    if not batches and not outstanding:
        pending: dict[tuple[str, str], int] | None = {}
    else:
        pending = waiting(acked) if count else None
    return Outgoing(batches, pending, QuarantinedRow.objects.count())


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
        if model.store_replicated(records):
            pass  # the table stores its rows its own way (trend samples: COPY, partitions on demand)
        elif key == ["origin", "origin_seq"]:
            model.settle_replicated(records)
            _insert_as_sent(model, records, OnConflict.IGNORE)
        else:
            _upsert_newer(model, key, records)
        top = model.stored_tops(batch["origin"]).get(batch["origin"])
    return top or 0


def _version(model: type[HistoryRow], record: dict[str, Any]) -> tuple[int, int, str, int]:
    """The order of a mutable row's versions: what it knows (the model's rank), then epoch, origin and seq.

    For commands the rank puts the outcome recorded by the node that sent
    the command above any version written elsewhere: a successor's
    ``unknown`` or ``expired`` knows less than the sender's ``succeeded``,
    even from a later epoch (ADR 0008). Otherwise the later epoch wins;
    within one, the origin, then its seq. Both nodes apply the same order,
    so concurrent versions of one command converge to the same row on both,
    whatever order they arrive in, and an older version sent back (a node's
    own rows return from its peer) never overwrites a newer one.
    """
    return model.merge_rank(record), int(record["epoch"]), str(record["origin"]), int(record["origin_seq"])


def _upsert_newer(model: type[HistoryRow], key: list[str], records: list[dict[str, Any]]) -> None:
    """Mutable rows (commands): insert, or overwrite a stored version only with a newer one."""
    if not records:
        return
    wanted = Q()
    for record in records:
        wanted |= Q(**{name: record[name] for name in key})
    compared = ("epoch", "origin", "origin_seq", *model.MERGE_FIELDS)
    stored = {
        tuple(row[: len(key)]): _version(model, dict(zip(compared, row[len(key) :], strict=True)))
        for row in model.objects.select_for_update().filter(wanted).values_list(*key, *compared)
    }
    newest: dict[tuple, dict[str, Any]] = {}
    for record in records:
        ident = tuple(record[name] for name in key)
        if ident in stored and _version(model, record) <= stored[ident]:
            continue
        if ident not in newest or _version(model, record) > _version(model, newest[ident]):
            newest[ident] = record
    _insert_as_sent(model, list(newest.values()), OnConflict.UPDATE, key)


def _insert_as_sent(
    model: type[HistoryRow], records: list[dict[str, Any]], conflict: OnConflict, key: list[str] | None = None
) -> None:
    """Insert rows with every value exactly as the origin wrote it.

    ``bulk_create`` would run ``pre_save``, which replaces ``auto_now_add``
    times (an audit entry's time, a command's created_at) with this node's
    clock, so the two databases would differ. A raw insert keeps them.
    Fields the sender did not send (a partner running an older release)
    take their model default, never NULL.
    """
    if not records:
        return
    fields = _fields(model)
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
