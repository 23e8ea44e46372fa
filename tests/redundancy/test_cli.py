"""``python manage.py redundancy status|switchover`` against this node's database.

A switchover that completes needs two running nodes: see
``tests/browser/test_pair_follow.py``, which runs it against a real pair.
"""

from __future__ import annotations

import io
import json
import time

import pytest
from django.core.management import CommandError, call_command

from bms.control.models import AuditEntry
from redundancy.models import NodeState
from tests.redundancy.pairweb import MAIN_URL


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("redundancy", *args, stdout=out)
    return out.getvalue()


def test_status_summary(as_main):
    as_main.set_role("active", epoch=3)
    text = run("status")
    lines = text.splitlines()
    assert lines[0] == "node main: active (epoch 3)"
    assert "partner backup at 10.0.0.11:8800: standby, connected yes, fault no, heartbeat age 120 ms" in text
    assert "sync: caught up yes, lag 3.2 ms, history backlog 7" in text
    assert "switchover: possible" in text


def test_status_json_is_the_api_document(as_backup):
    as_backup.set_role("standby", epoch=3)
    body = json.loads(run("status", "--json"))
    assert (body["node"], body["role"], body["active_node"], body["active_url"]) == (
        "backup",
        "standby",
        "main",
        MAIN_URL,
    )
    assert body["partners"][0]["symbol"] == "main"


def test_status_of_a_node_alone(settings, db):
    settings.BMS_PARTNER_ADDRESS = ""
    text = run("status")
    assert "active (epoch 0)" in text and "runs alone" in text


def test_switchover_refused_names_the_reason(as_main):
    as_main.set_role("active", partner_caught_up=False)
    with pytest.raises(CommandError, match="switchover refused: the partner backup has not caught up yet"):
        run("switchover", "--wait", "1")
    assert NodeState.objects.get(node="main").switchover_requested_at is None


def test_switchover_only_asks_with_wait_zero(as_main):
    as_main.set_role("active")
    assert run("switchover", "--wait", "0").startswith("Switchover requested: main hands control to backup")
    assert NodeState.objects.get(node="main").switchover_requested_at is not None
    assert AuditEntry.objects.get(action="redundancy.switchover").detail["source"] == "cli"


def test_switchover_that_does_not_happen_times_out_with_a_clear_message(as_main):
    as_main.set_role("active", epoch=3)  # no pair service runs here to carry it out
    started = time.monotonic()
    with pytest.raises(CommandError, match=r"switchover not completed within 0.6 s: main is still active \(epoch 3\)"):
        run("switchover", "--wait", "0.6")
    assert 0.6 <= time.monotonic() - started < 5
