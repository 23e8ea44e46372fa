"""The redundancy page, ``GET /api/redundancy/status`` and ``POST /api/redundancy/switchover``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bms.control.models import AuditEntry
from bms.events.models import Event
from redundancy.models import NodeState
from tests.redundancy.pairweb import MAIN_URL


def role_change(node: str, message: str, minutes_ago: int, origin: str) -> None:
    Event.objects.create(
        time=datetime.now(UTC) - timedelta(minutes=minutes_ago),
        kind="role_change",
        source=node,
        severity="warning",
        message=message,
        origin=origin,
    )


def test_status_needs_a_login(client, as_main):
    response = client.get("/api/redundancy/status")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"


def test_status_has_the_screen_fields_live_state_and_both_nodes_role_changes(client, as_main, operator):
    as_main.set_role("active", epoch=6)
    role_change("main", "standby -> active (epoch 6): partner backup silent for 3004 ms; taking control", 1, "main")
    role_change("backup", "active -> syncing (epoch 6): partner main is active in epoch 6; stepping down", 2, "backup")
    Event.objects.create(time=datetime.now(UTC), kind="comm_lost", source="plant", message="x", origin="main")
    client.force_login(operator)
    body = client.get("/api/redundancy/status").json()
    assert (body["node"], body["role"], body["epoch"], body["pair"], body["fresh"]) == ("main", "active", 6, True, True)
    assert set(body["this"]) >= {
        "symbol",
        "port",
        "activate",
        "is_primary",
        "connected_server",
        "connected_client",
        "enable_db_sync",
        "database",
        "verified",
    }
    assert set(body["partners"][0]) >= {
        "symbol",
        "ip_address",
        "port",
        "period_ms",
        "timeout_ms",
        "retry_count",
        "activate",
        "is_primary",
        "connected",
        "fault",
        "database",
        "verified",
        "comment",
    }
    assert body["sync"]["lag_ms"] == 3.25 and body["sync"]["history_backlog"] == 7
    assert [change["node"] for change in body["role_changes"]] == ["main", "backup"]  # newest first, no other kinds
    assert "taking control" in body["role_changes"][0]["reason"]
    assert body["switchover"] == {"allowed": True, "reason": ""}
    assert 0 <= body["status_age_ms"] < 5000


def test_status_of_a_node_alone_says_so(client, settings, operator):
    settings.BMS_PARTNER_ADDRESS = ""
    client.force_login(operator)
    body = client.get("/api/redundancy/status").json()
    assert body["pair"] is False and body["role"] == "active"
    assert "runs alone" in body["message"]
    assert body["switchover"]["allowed"] is False


def test_redundancy_page_shows_the_fields_and_the_switchover_button_to_engineers(client, as_main, engineer):
    as_main.set_role("active", epoch=6)
    role_change("main", "syncing -> active (epoch 6): no node is active; this node takes control", 1, "main")
    client.force_login(engineer)
    page = client.get("/redundancy/").content.decode()
    for heading in ("This SCADA", "Partners", "Connected server", "Connected client", "Enable DB sync", "Retry count"):
        assert heading in page
    assert '<td data-f="partners.0.ip_address">10.0.0.11</td>' in page
    assert '<td data-f="this.verified" data-kind="verified">Verified</td>' in page
    assert "this node takes control" in page
    assert '<button type="button" id="switchover">Switchover</button>' in page
    assert 'href="/redundancy/"' in page  # in the navigation


def test_operators_see_the_page_without_the_button(client, as_main, operator):
    as_main.set_role("active")
    client.force_login(operator)
    page = client.get("/redundancy/").content.decode()
    assert "Partners" in page and 'id="switchover"' not in page
    assert client.get("/redundancy/").status_code == 200


def test_switchover_needs_the_permission(client, as_main, operator):
    as_main.set_role("active")
    client.force_login(operator)
    response = client.post("/api/redundancy/switchover")
    assert response.status_code == 403
    assert "redundancy.switchover" in response.json()["message"]
    assert NodeState.objects.get(node="main").switchover_requested_at is None


def test_switchover_on_the_active_node_is_requested(client, as_main, engineer):
    as_main.set_role("active", epoch=6)
    client.force_login(engineer)
    response = client.post("/api/redundancy/switchover")
    assert response.status_code == 202
    assert response.json()["message"] == "Switchover requested: main hands control to backup within a few seconds."
    row = NodeState.objects.get(node="main")
    assert row.switchover_requested_at is not None and row.switchover_requested_by == "eng"
    entry = AuditEntry.objects.get(action="redundancy.switchover")
    assert entry.username == "eng" and entry.detail["source"] == "api"


def test_switchover_refused_while_the_partner_has_not_caught_up(client, as_main, engineer):
    as_main.set_role("active", partner_caught_up=False)
    client.force_login(engineer)
    response = client.post("/api/redundancy/switchover")
    assert response.status_code == 409
    assert response.json()["message"] == (
        "Switchover refused: the partner backup has not caught up yet (image, configuration and history)."
    )
    assert NodeState.objects.get(node="main").switchover_requested_at is None


def test_switchover_refused_when_the_partner_is_not_standby(client, as_main, engineer):
    as_main.set_role("active", partner_role="unknown")
    client.force_login(engineer)
    response = client.post("/api/redundancy/switchover")
    assert response.status_code == 409
    assert "the partner backup is unknown, not standby" in response.json()["message"]


def test_switchover_asked_on_the_standby_is_accepted_there(client, as_backup, engineer):
    as_backup.set_role("standby")
    client.force_login(engineer)
    response = client.post("/api/redundancy/switchover")
    assert response.status_code == 202, response.json()
    assert "asks the active node main" in response.json()["message"]
    assert NodeState.objects.get(node="backup").switchover_requested_at is not None


def test_switchover_refused_when_the_role_is_unknown(client, as_backup, engineer):
    as_backup.set_role("standby", age=30)
    client.force_login(engineer)
    response = client.post("/api/redundancy/switchover")
    assert response.status_code == 409
    assert "does not know its role" in response.json()["message"]
    assert MAIN_URL in response.json()["message"]
