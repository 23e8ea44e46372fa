"""``/healthz`` and ``/healthz/active`` for load balancers and following clients, and ``/metrics`` for Prometheus."""

from __future__ import annotations

import re

from django.contrib.auth.models import User

from tests.redundancy.pairweb import BACKUP_URL, MAIN_URL

HEALTH_KEYS = {
    *("node", "role", "epoch", "active_node", "active_url", "partner", "partner_url", "pair", "status"),
    "channel_layer",  # "ok" | "down" (bms.realtime.layer_health); always "ok" with the in-memory layer
    "database",  # "ok" | why not (answered from memory while the database is away)
    "live",  # this web process's live fan-out counters (bms.realtime.hub.live_stats)
    "trends",  # the trend writer: ok, spooling, losing or unknown (bms/trends/status.py)
}


def test_health_of_a_node_alone(client, settings, db):
    settings.BMS_PARTNER_ADDRESS = ""
    settings.BMS_PUBLIC_URL = "http://solo:8000"
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response.json() == {
        "node": settings.BMS_NODE_NAME,
        "role": "active",
        "epoch": 0,
        "active_node": settings.BMS_NODE_NAME,
        "active_url": "http://solo:8000",
        "partner": "",
        "partner_url": "",
        "pair": False,
        "status": "ok",
        "database": "ok",
        "channel_layer": "ok",
        "live": {
            "clients": 0,
            "direct_clients": 0,
            "views": 0,
            "points": 0,
            "frames_encoded": 0,
            "frames_sent": 0,
            "catch_ups": 0,
            "snapshots_requested": 0,
        },
        "trends": {"status": "unknown"},  # no trend writer has run for this node and database
    }
    assert client.get("/healthz/active").status_code == 200


def test_active_node_answers_active_without_login(client, as_main):
    as_main.set_role("active", epoch=9)
    for path in ("/healthz", "/healthz/active"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response["Access-Control-Allow-Origin"] == "*"
        body = response.json()
        assert set(body) == HEALTH_KEYS
        assert (body["node"], body["role"], body["epoch"]) == ("main", "active", 9)
        assert body["active_url"] == MAIN_URL and body["partner_url"] == BACKUP_URL


def test_standby_is_alive_but_not_active(client, as_backup):
    as_backup.set_role("standby", epoch=9)
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["role"] == "standby" and health.json()["active_node"] == "main"
    active = client.get("/healthz/active")
    assert active.status_code == 503
    assert active["Access-Control-Allow-Origin"] == "*"
    assert active.json() == health.json()


def test_stale_state_reports_role_unknown(client, as_main):
    as_main.set_role("active", age=20)
    assert client.get("/healthz").json()["role"] == "unknown"
    assert client.get("/healthz/active").status_code == 503


# --- /metrics ---------------------------------------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-z_]+)(\{([a-z_]+="[^"\\]*"(,[a-z_]+="[^"\\]*")*)\})? (-?[0-9.e+-]+|NaN)$')


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """Check the 0.0.4 text format strictly enough (HELP, TYPE before samples; sample syntax); return samples."""
    assert text.endswith("\n")
    families: dict[str, dict[str, float]] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter"), line
            typed.add(name)
            continue
        match = SAMPLE.match(line)
        assert match, f"not a valid sample line: {line!r}"
        assert match[1] in typed, f"sample before its TYPE: {line!r}"
        families.setdefault(match[1], {})[match[3] or ""] = float(match[5])
    return families


def test_metrics_of_a_pair_node(client, as_backup):
    as_backup.set_role("standby", epoch=12)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    metrics = parse_metrics(response.content.decode())
    roles = metrics["bms_redundancy_role"]
    assert roles['node="backup",role="standby"'] == 1
    assert roles['node="backup",role="active"'] == 0
    assert sum(roles.values()) == 1
    assert metrics["bms_redundancy_epoch"] == {'node="backup"': 12}
    pair = 'node="backup",partner="main"'
    assert metrics["bms_redundancy_heartbeat_age_seconds"] == {pair: 0.12}
    assert metrics["bms_redundancy_sync_lag_seconds"] == {pair: 0.00325}
    assert metrics["bms_redundancy_history_backlog"] == {pair: 7}
    assert metrics["bms_redundancy_failovers_total"] == {'node="backup"': 2}
    assert metrics["bms_redundancy_partner_connected"] == {pair: 1}


def test_metrics_of_a_stale_node_leave_out_what_it_does_not_know(client, as_backup):
    as_backup.set_role("active", age=60)
    metrics = parse_metrics(client.get("/metrics").content.decode())
    assert metrics["bms_redundancy_role"]['node="backup",role="unknown"'] == 1
    assert metrics["bms_redundancy_status_age_seconds"]['node="backup"'] >= 60
    assert "bms_redundancy_heartbeat_age_seconds" not in metrics
    assert "bms_redundancy_partner_connected" not in metrics


def test_metrics_of_a_node_alone(client, settings, db):
    settings.BMS_PARTNER_ADDRESS = ""
    settings.BMS_NODE_NAME = "solo"
    metrics = parse_metrics(client.get("/metrics").content.decode())
    assert metrics["bms_redundancy_role"]['node="solo",role="active"'] == 1
    assert metrics["bms_redundancy_pair_configured"] == {'node="solo"': 0}
    assert metrics["bms_redundancy_epoch"] == {'node="solo"': 0}


def test_metrics_escape_label_values(client, settings, db):
    settings.BMS_PARTNER_ADDRESS = ""
    settings.BMS_NODE_NAME = 'a"b\\c'
    text = client.get("/metrics").content.decode()
    assert 'bms_redundancy_epoch{node="a\\"b\\\\c"} 0' in text.splitlines()


def test_health_and_metrics_need_no_session(client, as_main):
    as_main.set_role("active")
    assert not User.objects.exists()
    assert client.get("/metrics").status_code == 200
    assert client.get("/healthz").status_code == 200
