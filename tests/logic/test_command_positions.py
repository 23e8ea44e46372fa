"""A rule without a state continues its numbering after the command log, asked for many rules in one pass.

A lone node's cold start asks for every rule's highest command number. One query per rule walked the log
from its newest row until it had that rule's commands: for a rule whose commands are old, the whole log
(17.5 ms a rule at 200,000 commands, 87 s for 5,000 rules on the engine's database thread). Now the log is
read once, newest first, for all the rules asked: each must get the number its own query gave.
"""

from __future__ import annotations

import pytest

from bms.control.models import Command
from bms.logic import store
from bms.logic.runner import command_id

pytestmark = pytest.mark.django_db

LONG = "a-rule-name-whose-ids-are-too-long-to-carry-it-plainly-" + "x" * 20


def command(cid: str, origin_seq: int) -> Command:
    return Command(
        command_id=cid,
        point_name="p",
        value=1,
        priority=16,
        payload_hash="x",
        source="logic",
        accepted_by="main",
        status=Command.SUCCEEDED,
        origin="main",
        origin_seq=origin_seq,
    )


@pytest.fixture
def log_of_many_rules():
    rows = []
    for n in range(1, 31):  # r1 .. r11 interleaved, newest last; r1's numbers never look like r10's or r11's
        for rule in ("r1", "r10", "r11", "r2", "r3"):
            rows.append(command(command_id(rule, n), len(rows) + 1))
    rows += [command(command_id("r2", 1031), len(rows) + 1)]  # a takeover: the numbering jumped 1000 ahead
    rows += [command(command_id("r2", 40), len(rows) + 1)]  # ... an old node's row replicated afterwards
    rows += [command(command_id("r4", 7), len(rows) + 1)]  # an old rule, its commands far back in the log
    rows += [command(command_id(LONG, 3), len(rows) + 1)]  # a name carried as a hash
    rows += [command("api-write-1", len(rows) + 1), command("logic:r5:not-a-number", len(rows) + 2)]
    for k in range(60):  # newer commands of other rules after the old ones
        rows.append(command(command_id("busy", k + 1), len(rows) + 1))
    Command.objects.bulk_create(rows)


RULES = ["r1", "r10", "r11", "r2", "r3", "r4", "r5", "r6", LONG, "busy", "r7", "r8"]
EXPECTED = {"r1": 30, "r10": 30, "r11": 30, "r2": 1031, "r3": 30, "r4": 7, LONG: 3, "busy": 60}


def test_one_pass_over_the_log_finds_each_rules_highest_number(log_of_many_rules):
    assert store.command_positions(RULES) == EXPECTED


def test_each_rule_asked_alone_gets_the_same_number(log_of_many_rules):
    for rule in RULES:
        assert store.command_positions([rule]) == ({rule: EXPECTED[rule]} if rule in EXPECTED else {}), rule
    assert store.command_positions([]) == {}
