"""A write waits a bounded time for the history counter's lock, then is refused: it never hangs behind a frozen engine.

Every history row takes its stamp from one counter row per node, locked until its transaction ends. In a CI
run an engine was frozen (SIGSTOP) inside such a transaction and a web write waited behind the lock for the
whole freeze (30 s). Here another real connection holds that lock, as the frozen engine did.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection

from bms.control.models import AuditEntry, Command
from bms.history.models import OriginCounter
from tests.support import services

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator(client):
    call_command("loaddemo", modbus_port=1, demo_user=True, verbosity=0)
    client.force_login(User.objects.get(username="demo"))
    return client


def test_a_write_behind_a_held_stamp_lock_is_refused_as_busy_within_the_bound_and_goes_through_after(operator):
    OriginCounter.objects.get_or_create(origin=settings.BMS_NODE_NAME)
    test_database = services.database_url(connection.settings_dict["NAME"])
    with psycopg.connect(test_database) as holder:  # a transaction left open, as a frozen engine's
        held = holder.execute(
            "UPDATE history_origincounter SET value = value + 1 WHERE origin = %s", [settings.BMS_NODE_NAME]
        )
        assert held.rowcount == 1
        began = time.monotonic()
        answer = operator.post("/api/points/zone1_setpoint/write", {"value": 21.5}, content_type="application/json")
        waited = time.monotonic() - began
        body = answer.json()
        assert (answer.status_code, body.get("error")) == (503, "busy"), body
        assert "try again" in body["message"] and "nothing was recorded" in body["message"]
        assert waited < settings.BMS_WRITE_LOCK_WAIT_MS / 1000 + 2.0, waited  # bounded (generous on a loaded host)
        holder.rollback()
    assert not Command.objects.exists()
    assert not AuditEntry.objects.filter(action="write.rejected").exists()  # its audit row would wait the same
    answer = operator.post("/api/points/zone1_setpoint/write", {"value": 21.5}, content_type="application/json")
    assert answer.status_code in (202, 200, 503), answer.json()
    assert Command.objects.filter(point_name="zone1_setpoint").count() == 1  # recorded once the lock is free
