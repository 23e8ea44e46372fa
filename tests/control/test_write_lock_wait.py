"""A write waits a bounded time for the history counter's lock, then is refused: it never hangs behind a frozen engine.

Every history row takes its stamp from one counter row per node, locked until its transaction ends. In a CI
run an engine was frozen (SIGSTOP) inside such a transaction and a web write waited behind the lock for the
whole freeze (30 s). Here another real connection holds that lock, as the frozen engine did.

The records the web side writes around an answer wait the same bounded time (bms.history.lockwait): the audit
row of a write refused by the command path or by a node that is not active, and a token's use. A run of
test_split_liveness under two busy loops (4 December 2026) had a refused write wait 30 s for its audit row.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client

from bms.control.models import AuditEntry, Command
from bms.history.models import OriginCounter
from bms.tokens.models import TokenUse
from bms.tokens.services import issue
from tests.redundancy.pairweb import as_backup  # noqa: F401 (a fixture)
from tests.support import services

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator(client):
    call_command("loaddemo", modbus_port=1, demo_user=True, verbosity=0)
    client.force_login(User.objects.get(username="demo"))
    return client


#: the bound on a loaded host: the lock wait and a request's own work, far below a freeze's 30 s
BOUND_S = settings.BMS_WRITE_LOCK_WAIT_MS / 1000 + 2.0


@contextlib.contextmanager
def stamp_lock_held() -> Iterator[None]:
    """Another real connection holds this node's history counter row in an open transaction, as a frozen engine."""
    OriginCounter.objects.get_or_create(origin=settings.BMS_NODE_NAME)
    with psycopg.connect(services.database_url(connection.settings_dict["NAME"])) as holder:
        held = holder.execute(
            "UPDATE history_origincounter SET value = value + 1 WHERE origin = %s", [settings.BMS_NODE_NAME]
        )
        assert held.rowcount == 1
        yield
        holder.rollback()


def timed(request) -> tuple[object, float]:
    began = time.monotonic()
    answer = request()
    return answer, time.monotonic() - began


def write(client, value: float):
    return client.post("/api/points/zone1_setpoint/write", {"value": value}, content_type="application/json")


def test_a_write_behind_a_held_stamp_lock_is_refused_as_busy_within_the_bound_and_goes_through_after(operator):
    with stamp_lock_held():
        answer, waited = timed(lambda: write(operator, 21.5))
    body = answer.json()
    assert (answer.status_code, body.get("error")) == (503, "busy"), body
    assert "try again" in body["message"] and "nothing was recorded" in body["message"]
    assert waited < BOUND_S, waited
    assert not Command.objects.exists()
    assert not AuditEntry.objects.filter(action="write.rejected").exists()  # its audit row would wait the same
    answer = write(operator, 21.5)
    assert answer.status_code in (202, 200, 503), answer.json()
    assert Command.objects.filter(point_name="zone1_setpoint").count() == 1  # recorded once the lock is free


def test_a_refused_write_behind_a_held_stamp_lock_is_answered_within_the_bound_and_says_its_audit_row_is_missing(
    operator, caplog
):
    caplog.set_level(logging.WARNING, logger="bms.control.services")
    with stamp_lock_held():
        answer, waited = timed(lambda: write(operator, 99.0))
    assert (answer.status_code, answer.json()["error"]) == (400, "out_of_range"), answer.json()
    assert waited < BOUND_S, waited
    assert not AuditEntry.objects.filter(action="write.rejected").exists()
    assert "not in the audit trail: the history stamp stayed locked" in caplog.text
    # With the lock free the same refusal is recorded, as always.
    answer = write(operator, 99.0)
    assert answer.status_code == 400
    assert AuditEntry.objects.filter(action="write.rejected", target="zone1_setpoint").count() == 1


def test_a_token_request_behind_a_held_stamp_lock_is_answered_within_the_bound_and_its_use_is_logged(operator, caplog):
    script = Client()  # the token alone, no session
    key = issue(User.objects.get(username="demo"), "script", "write", 30, by=None).key
    caplog.set_level(logging.ERROR, logger="bms.tokens.middleware")
    with stamp_lock_held():
        answer, waited = timed(lambda: script.get("/api/v1/sites/", HTTP_AUTHORIZATION=f"Bearer {key}"))
    assert answer.status_code == 200, answer.content[:300]
    assert waited < BOUND_S, waited
    assert not TokenUse.objects.exists()
    assert "could not be recorded" in caplog.text and "lock timeout" in caplog.text
    assert script.get("/api/v1/sites/", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    assert TokenUse.objects.count() == 1


def test_a_standby_refusal_behind_a_held_stamp_lock_is_answered_within_the_bound(as_backup, operator, caplog):  # noqa: F811
    as_backup.set_role("standby", epoch=7)
    caplog.set_level(logging.WARNING, logger="redundancy.middleware")
    with stamp_lock_held():
        answer, waited = timed(lambda: write(operator, 21.5))
    assert (answer.status_code, answer.json()["error"]) == (503, "standby"), answer.json()
    assert waited < BOUND_S, waited
    assert not AuditEntry.objects.filter(action="refused.standby").exists()
    assert "is not in the audit trail: the history stamp stayed locked" in caplog.text
    answer = write(operator, 21.5)
    assert answer.status_code == 503
    assert AuditEntry.objects.filter(action="refused.standby").count() == 1
