"""The alarm journal holds one row per transition number on both nodes, whichever node wrote it first (ADR 0014)."""

from datetime import UTC, datetime

import pytest

from bms.alarms.models import AlarmJournal
from redundancy import history

pytestmark = pytest.mark.django_db

FIELDS = ["origin", "epoch", "origin_seq", "time", "alarm", "point_name", "transition", "state", "alarm_seq"]
FIELDS += ["recovered", "message"]
WHEN = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def row(origin: str, seq: int, number: int, recovered: bool, message: str) -> list:
    return [
        origin,
        2,
        seq,
        WHEN,
        "zone1_temp.high",
        "zone1_temp",
        "raised",
        "active_unacked",
        number,
        recovered,
        message,
    ]


def batch(origin: str, *rows: list) -> dict:
    return {"table": "alarms.alarmjournal", "origin": origin, "fields": FIELDS, "rows": list(rows)}


def stored() -> list[tuple[str, int, bool, str]]:
    return list(AlarmJournal.objects.order_by("alarm_seq").values_list("origin", "alarm_seq", "recovered", "message"))


def test_the_original_arriving_after_a_recovered_copy_replaces_it():
    history.store_rows(batch("backup", row("backup", 7, 1, True, "rebuilt")))
    history.store_rows(batch("main", row("main", 3, 1, False, "original")))
    assert stored() == [("main", 1, False, "original")]


def test_a_recovered_copy_arriving_after_the_original_is_ignored_and_the_batch_still_stores_the_rest():
    history.store_rows(batch("main", row("main", 3, 1, False, "original")))
    top = history.store_rows(batch("backup", row("backup", 7, 1, True, "rebuilt"), row("backup", 8, 2, False, "next")))
    assert stored() == [("main", 1, False, "original"), ("backup", 2, False, "next")]
    assert top == 8


def test_two_copies_of_one_kind_keep_the_lower_stamp_on_both_nodes_whatever_the_order():
    first, second = row("backup", 7, 1, True, "b"), row("main", 9, 1, True, "m")
    history.store_rows(batch("main", second))
    history.store_rows(batch("backup", first))
    one = stored()
    AlarmJournal.objects.all().delete()
    history.store_rows(batch("backup", first))
    history.store_rows(batch("main", second))
    assert stored() == one == [("backup", 1, True, "b")]
