"""A node that is not active is read-only: changes are refused with the active node's address and recorded;
every page (the admin included) carries a banner naming this node's role and the active node.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection

from bms.control.models import AuditEntry, Command
from bms.points.models import Device
from redundancy.config import heartbeat_timeout
from redundancy.nodeview import node_view
from tests.redundancy.pairweb import MAIN_URL


@pytest.fixture
def plant(db) -> Device:
    from bms.points.models import Point

    device = Device.objects.create(name="plant", driver="modbus", host="127.0.0.1", port=1502)
    Point.objects.create(
        device=device, name="zone1_setpoint", address="hr:0", data_type="float32", writable=True, max_value=28
    )
    return device


def post_write(client, point: str = "zone1_setpoint", value: float = 22.0):
    return client.post(f"/api/points/{point}/write", json.dumps({"value": value}), content_type="application/json")


def test_standby_refuses_an_api_write_names_the_active_node_and_records_it(client, as_backup, operator, plant):
    as_backup.set_role("standby", epoch=7)
    client.force_login(operator)
    response = post_write(client)
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "standby"
    assert body["active_node"] == "main" and body["active_url"] == MAIN_URL
    assert body["message"] == (f"This node (backup) is standby; make changes on the active node main at {MAIN_URL}")
    assert not Command.objects.exists(), "a refused write must not reach the command log"
    entry = AuditEntry.objects.get(action="refused.standby")
    assert entry.username == "op" and entry.target == "/api/points/zone1_setpoint/write"
    assert entry.detail["role"] == "standby" and entry.detail["epoch"] == 7 and entry.detail["method"] == "POST"
    assert entry.origin == "backup"


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_standby_refuses_every_changing_method(client, as_backup, operator, method):
    as_backup.set_role("standby")
    client.force_login(operator)
    response = getattr(client, method)("/api/points/zone1_setpoint/")
    assert response.status_code == 503
    assert AuditEntry.objects.filter(action="refused.standby").count() == 1


def test_standby_serves_reads(client, as_backup, operator, plant):
    as_backup.set_role("standby")
    client.force_login(operator)
    assert client.get("/points/").status_code == 200
    assert client.get("/api/points/zone1_setpoint/").status_code == 200
    assert not AuditEntry.objects.filter(action="refused.standby").exists()


def test_admin_post_on_standby_is_refused_with_a_page(client, as_backup, engineer, plant):
    as_backup.set_role("standby")
    client.force_login(engineer)
    response = client.post(
        f"/admin/points/device/{plant.pk}/change/",
        {"name": "renamed", "driver": "modbus", "host": "127.0.0.1", "port": 1502},
    )
    assert response.status_code == 503
    page = response.content.decode()
    assert "This node is read-only" in page
    assert f"make changes on the active node main at {MAIN_URL}" in page
    assert f'href="{MAIN_URL}/admin/points/device/{plant.pk}/change/"' in page
    plant.refresh_from_db()
    assert plant.name == "plant"
    assert AuditEntry.objects.filter(action="refused.standby", target__startswith="/admin/").count() == 1


def test_login_logout_and_switchover_stay_possible_on_standby(client, as_backup, operator):
    as_backup.set_role("standby")
    response = client.post("/login/", {"username": "op", "password": "op-pass-123"})
    assert response.status_code == 302 and response["Location"] == "/points/"
    # the switchover endpoint answers for itself (here: the operator lacks the permission)
    assert client.post("/api/redundancy/switchover").status_code == 403
    assert client.post("/logout/").status_code == 302
    assert client.get("/points/").status_code == 302  # logged out
    assert not AuditEntry.objects.filter(action="refused.standby").exists()


def test_active_node_accepts_changes(client, as_main, operator):
    as_main.set_role("active")
    client.force_login(operator)
    response = post_write(client, point="no_such_point")
    assert response.status_code == 404  # reached the view: refused for its own reason, not by the guard
    assert response.json()["error"] == "unknown_point"


def test_a_node_alone_is_always_active(client, settings, operator):
    settings.BMS_PARTNER_ADDRESS = ""
    client.force_login(operator)
    assert post_write(client, point="no_such_point").status_code == 404
    assert "pair-banner" not in client.get("/points/").content.decode()


def test_stale_node_state_means_role_unknown_and_read_only(client, as_backup, operator):
    as_backup.set_role("active", age=30)  # the engine stopped writing its row half a minute ago
    client.force_login(operator)
    response = post_write(client)
    assert response.status_code == 503
    body = response.json()
    assert body["role"] == "unknown"
    assert body["message"].startswith(
        "This node (backup) does not know its role (no status from its redundancy service"
    )
    assert body["message"].endswith("try the partner main at " + MAIN_URL)
    page = client.get("/points/").content.decode()
    assert "does not know its role" in page and 'data-role="unknown"' in page


def test_missing_node_state_on_a_pair_node_is_read_only(client, as_backup, operator):
    client.force_login(operator)
    assert post_write(client).status_code == 503


def test_banner_on_standby_names_the_active_node_with_a_link(client, as_backup, operator):
    as_backup.set_role("standby", epoch=3)
    client.force_login(operator)
    page = client.get("/events/").content.decode()
    assert 'id="pair-banner"' in page
    assert "node <strong>backup</strong> is <strong>standby</strong> (epoch 3)" in page
    assert f'<a href="{MAIN_URL}/events/">main</a>' in page
    # clients that follow the active node know both nodes
    assert f'data-partner-url="{MAIN_URL}"' in page and 'data-role="standby"' in page


def test_banner_on_active_node(client, as_main, operator):
    as_main.set_role("active", epoch=5)
    client.force_login(operator)
    page = client.get("/points/").content.decode()
    assert "Node <strong>main</strong> is <strong>active</strong> (epoch 5)" in page
    assert "Read-only" not in page


def test_admin_pages_carry_the_banner(client, as_backup, engineer):
    as_backup.set_role("standby")
    client.force_login(engineer)
    page = client.get("/admin/").content.decode()
    assert 'id="pair-banner"' in page and "is <strong>standby</strong>" in page
    assert "bms/pair.css" in page
    client.logout()
    assert "Read-only" in client.get("/admin/login/").content.decode()


def test_standby_reads_no_priority_array_from_a_device_and_says_where_to(client, as_backup, operator, db):
    # No field I/O on a standby, reads included: the device (a port nobody listens on) is never asked.
    device = Device.objects.create(name="ahu", driver="bacnet", host="127.0.0.1", port=1, options={"device_id": 9})
    from bms.points.models import Point

    Point.objects.create(device=device, name="valve", address="analog-value:1", data_type="float32", writable=True)
    as_backup.set_role("standby", epoch=7)
    client.force_login(operator)
    response = client.get("/api/points/valve/priority-array")
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "standby" and body["active_node"] == "main" and body["active_url"] == MAIN_URL
    assert body["message"] == (
        f"This node (backup) is standby and does not talk to devices; read it on the active node main at {MAIN_URL}"
    )


def beat_later(node, delay: float) -> threading.Thread:
    """The engine's next status beat, ``delay`` seconds from now, written from another connection."""

    def beat() -> None:
        time.sleep(delay)
        try:
            node.set_role("active", epoch=4)
        finally:
            connection.close()

    thread = threading.Thread(target=beat)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_change_waits_for_a_status_only_a_beat_late_instead_of_being_refused(client, as_main, operator):
    # Under load the status row's write can come a beat late while the engine is fine (bench/stress.py): the
    # change waits for it rather than being refused on a row just past the timeout.
    timeout = heartbeat_timeout()
    as_main.set_role("active", epoch=4, age=1.2 * timeout)
    client.force_login(operator)
    assert node_view().role == "unknown"
    thread = beat_later(as_main, timeout / 2)
    response = post_write(client, point="no_such_point")
    thread.join()
    assert response.status_code == 404, response.content  # past the guard: the view answered
    assert not AuditEntry.objects.filter(action="refused.standby").exists()


@pytest.mark.django_db(transaction=True)
def test_a_status_that_stays_late_is_refused_after_the_wait(client, as_main, operator):
    timeout = heartbeat_timeout()
    as_main.set_role("active", epoch=4, age=1.2 * timeout)
    client.force_login(operator)
    response = post_write(client, point="no_such_point")
    assert response.status_code == 503
    assert response.json()["role"] == "unknown"
    assert AuditEntry.objects.filter(action="refused.standby").count() == 1
