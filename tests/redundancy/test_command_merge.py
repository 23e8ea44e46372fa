"""Which version of a command wins the history merge (ADR 0008), against the real database.

The outcome recorded by the node that could send a command (``observed``)
knows what the device answered; a successor's ``unknown`` or ``expired``
knows only that the successor did not send it. The first must win whatever
the epochs and the order of arrival, on both nodes alike.
"""

from __future__ import annotations

import itertools

import pytest

from bms.control.models import Command
from redundancy import history

pytestmark = pytest.mark.django_db

FIELDS = ["command_id", "point_name", "value", "payload_hash", "source", "username", "accepted_by",
          "accepted_epoch", "status", "observed", "error", "created_at", "origin", "epoch", "origin_seq"]  # fmt: skip


def version(status: str, origin: str, epoch: int, seq: int, observed: bool = False) -> dict:
    row = ["c-1", "zone1_setpoint", 21.5, "h", "api", "op", "main", 4, status, observed, ""]
    return {
        "table": "control.command",
        "origin": origin,
        "fields": FIELDS,
        "rows": [[*row, "2026-11-22T00:00:00Z", origin, epoch, seq]],
    }


# What the issue saw: main (epoch 4) sent the write and recorded success; the backup took over
# (epoch 5) before that version arrived and marked the command unknown (or expired, if it still
# held it as pending). A thawed main may also have stepped down (its later stamps carry epoch 5).
VERSIONS = {
    "pending": version("pending", "main", 4, 10),
    "executing": version("executing", "main", 4, 11),
    "succeeded by main": version("succeeded", "main", 4, 12, observed=True),
    "unknown by backup": version("unknown", "backup", 5, 3),
    "expired by backup": version("expired", "backup", 5, 4),
}


@pytest.mark.parametrize("order", list(itertools.permutations(VERSIONS)))
def test_the_senders_outcome_wins_in_every_order_of_arrival(order):
    for name in order:
        history.store_rows(VERSIONS[name])
    command = Command.objects.get(command_id="c-1")
    assert (command.status, command.origin, command.observed) == ("succeeded", "main", True)


def test_a_successors_settlement_beats_progress_from_an_earlier_epoch():
    history.store_rows(version("unknown", "backup", 5, 3))
    history.store_rows(version("executing", "main", 4, 11))  # arrives late: knows less
    assert Command.objects.get(command_id="c-1").status == "unknown"
    history.store_rows(version("failed", "main", 5, 13, observed=True))  # main's own word: never sent
    command = Command.objects.get(command_id="c-1")
    assert (command.status, command.observed) == ("failed", True)


def test_among_settlements_the_later_epoch_wins():
    history.store_rows(version("unknown", "backup", 5, 3))
    history.store_rows(version("unknown", "main", 6, 20))
    assert Command.objects.get(command_id="c-1").origin == "main"
    history.store_rows(version("expired", "backup", 5, 4))
    assert Command.objects.get(command_id="c-1").origin == "main"


def test_a_version_from_an_older_release_without_the_new_fields_gets_defaults():
    fields = [f for f in FIELDS if f not in ("accepted_epoch", "observed")]
    row = ["c-2", "zone1_setpoint", 21.5, "h", "api", "op", "main", "succeeded", "", "2026-11-22T00:00:00Z"]
    history.store_rows({"table": "control.command", "origin": "main", "fields": fields, "rows": [[*row, "main", 3, 9]]})
    command = Command.objects.get(command_id="c-2")
    assert (command.accepted_epoch, command.observed, command.status) == (0, False, "succeeded")
