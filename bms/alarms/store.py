"""The alarm engine's database work: load the definitions, write journal rows, read what a cold start needs.

Every function here is blocking and runs on the engine's database thread,
never on the loop. Journal rows are written in batches with consecutive
history stamps, and the notifications outbox rows of a batch are created in
the same transaction (:func:`bms.notifications.outbox.enqueue`), so a
transition is journalled and queued for notification together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from bms.alarms.models import AlarmDefinition, AlarmJournal
from bms.alarms.spec import AlarmSpec
from bms.alarms.states import Transition
from bms.engine.dbconn import with_fresh_connection
from bms.history.bulk import copy_new_rows
from bms.history.models import next_stamps

#: a transition, the definition it belongs to and whether it is a lost row written again, as the engine queues them
JournalItem = tuple[Transition, AlarmSpec, bool]


def site_settings() -> dict[str, Any]:
    """The site-wide shelving and chattering settings (``BMS_ALARM_*``), as AlarmConfig keywords."""
    names = {
        "shelve_default": "BMS_ALARM_SHELVE_DEFAULT_SECONDS",
        "shelve_max": "BMS_ALARM_SHELVE_MAX_SECONDS",
        "chatter_count": "BMS_ALARM_CHATTER_COUNT",
        "chatter_window": "BMS_ALARM_CHATTER_WINDOW_SECONDS",
    }
    return {key: getattr(settings, name) for key, name in names.items()}


def read_alarm_specs() -> tuple[AlarmSpec, ...]:
    """Every enabled definition on an enabled point, as the engine runs it (call inside the config transaction)."""
    site = site_settings()
    definitions = AlarmDefinition.objects.filter(enabled=True, point__enabled=True, point__device__enabled=True)
    return tuple(
        definition.spec(**site)
        for definition in definitions.select_related("point", "alarm_class", "setpoint_point", "suppression_point")
    )


@with_fresh_connection
def write_journal(items: list[JournalItem]) -> int:
    """Store the journal rows of ``items`` (and their notifications); return how many rows were new.

    A transition whose ``(alarm, number)`` is stored already (written by the
    partner before a takeover, replicated here) is skipped with its
    notifications: it happened once, so it is journalled and notified once.
    """
    rows = []
    for transition, spec, recovered in items:
        row = AlarmJournal.for_transition(transition, spec)
        row.recovered = recovered
        rows.append(row)
    for _ in range(3):
        try:
            with transaction.atomic():
                return _insert_new(rows)
        except IntegrityError:
            # the partner's copy of one of these rows was replicated in between: the next round skips it
            continue
    raise RuntimeError("alarm journal rows kept clashing with replicated ones")


def _insert_new(rows: list[AlarmJournal]) -> int:
    if connection.vendor == "postgresql":
        return _copy_new(rows)
    numbered = [row for row in rows if row.alarm_seq]
    stored: set[tuple[str, int]] = set()
    if numbered:
        alarms = {row.alarm for row in numbered}
        lowest = min(row.alarm_seq for row in numbered)
        stored = set(
            AlarmJournal.objects.filter(alarm__in=alarms, alarm_seq__gte=lowest).values_list("alarm", "alarm_seq")
        )
    new = [row for row in rows if not row.alarm_seq or (row.alarm, row.alarm_seq) not in stored]
    if not new:
        return 0
    origin, epoch, seqs = next_stamps(len(new))
    for row, seq in zip(new, seqs, strict=True):
        row.origin, row.epoch, row.origin_seq = origin, epoch, seq
    saved = AlarmJournal.objects.bulk_create(new)
    _notify(saved)
    return len(saved)


def _copy_new(rows: list[AlarmJournal]) -> int:
    """PostgreSQL: stamp every row, ``COPY`` them in, keep those whose ``(alarm, alarm_seq)`` was not stored yet."""
    origin, epoch, seqs = next_stamps(len(rows))
    names = [field.attname for field in AlarmJournal._meta.concrete_fields if not field.primary_key]
    for row, seq in zip(rows, seqs, strict=True):
        row.origin, row.epoch, row.origin_seq = origin, epoch, seq
    records = [{name: getattr(row, name) for name in names} for row in rows]
    inserted = set(copy_new_rows(AlarmJournal, records, "origin_seq"))
    new = [row for row in rows if row.origin_seq in inserted]
    _notify(new)
    return len(new)


def _notify(rows: list[AlarmJournal]) -> None:
    if not apps.is_installed("bms.notifications"):
        return
    from bms.notifications.outbox import enqueue  # the app is optional: imported only when installed

    enqueue(rows)


@with_fresh_connection
def journal_positions(alarms: Iterable[str]) -> dict[str, int]:
    """The highest transition number stored in the journal per alarm (alarms with none are left out)."""
    return {alarm: number for rows in _last_rows(alarms) for alarm, number in rows.values_list("alarm", "alarm_seq")}


@with_fresh_connection
def last_journal_rows(alarms: Iterable[str]) -> dict[str, AlarmJournal]:
    """Per alarm, its journal row with the highest transition number (what a cold start resumes from)."""
    return {row.alarm: row for rows in _last_rows(alarms) for row in rows}


#: names per query: well under both databases' limits on parameters (SQLite: 32,766; PostgreSQL: 65,535)
_NAMES_PER_QUERY = 5000


def _last_rows(alarms: Iterable[str]) -> Iterator[QuerySet[AlarmJournal]]:
    """Each alarm's journal row with the highest transition number, one index probe per alarm.

    A correlated ``LIMIT 1`` per name over a ``VALUES`` list, run backwards on the ``alarms_journal_one_per_seq``
    index (its condition written as a literal so that both planners match it); one query per
    :data:`_NAMES_PER_QUERY` names. Before, a cold start or a takeover grouped every journal row of the alarms
    (``Max`` over ``alarm IN (...)``): a cost growing with the journal, on the engine's database thread
    (``bench/journal_positions.py``).
    """
    names = list(dict.fromkeys(alarms))
    table, pk = AlarmJournal._meta.db_table, AlarmJournal._meta.pk.column
    for start in range(0, len(names), _NAMES_PER_QUERY):
        chunk = names[start : start + _NAMES_PER_QUERY]
        latest = (
            f"SELECT (SELECT j.{pk} FROM {table} j WHERE j.alarm = a.column1 AND j.alarm_seq > 0 "
            "ORDER BY j.alarm_seq DESC LIMIT 1) FROM (VALUES " + ", ".join(["(%s)"] * len(chunk)) + ") AS a"
        )
        yield AlarmJournal.objects.filter(pk__in=RawSQL(latest, chunk)).order_by()
