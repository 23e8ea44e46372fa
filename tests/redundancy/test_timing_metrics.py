"""Timing health of a node in its status row and on ``/metrics``: the engine loop's lag and the heartbeat jitter."""

from __future__ import annotations

import time
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from bms.engine.loopwatch import LoopWatch
from bms.engine.runner import Engine
from redundancy import config as pair_config
from redundancy import nodeview
from redundancy.roles import Decision, Role, RoleMachine, Timing
from redundancy.service import PairService
from redundancy.status import build_status
from tests.redundancy.test_web_health import parse_metrics

# --- /metrics -----------------------------------------------------------------------------------------------------


def test_metrics_of_a_pair_node_show_loop_lag_and_heartbeat_jitter(client, as_backup):
    as_backup.set_role("standby", epoch=12)  # the status document of pairweb.status_doc
    metrics = parse_metrics(client.get("/metrics").content.decode())
    assert metrics["bms_engine_loop_lag_ms"] == {
        'node="backup",quantile="0.5"': 0.35,
        'node="backup",quantile="0.99"': 4.2,
        'node="backup",quantile="1"': 61.5,
    }
    assert metrics["bms_engine_loop_lag_samples"] == {'node="backup"': 2990}
    assert metrics["bms_engine_loop_slow_ticks_total"] == {'node="backup"': 3}
    pair = 'node="backup",partner="main"'
    assert metrics["bms_heartbeat_jitter_ms"] == {
        f'{pair},direction="sent",quantile="0.5"': 0.8,
        f'{pair},direction="sent",quantile="0.99"': 12.5,
        f'{pair},direction="sent",quantile="1"': 13.0,
        f'{pair},direction="received",quantile="0.5"': 1.1,
        f'{pair},direction="received",quantile="0.99"': 20.25,
        f'{pair},direction="received",quantile="1"': 22.0,
    }
    assert metrics["bms_heartbeat_intervals"] == {f'{pair},direction="sent"': 59, f'{pair},direction="received"': 58}
    assert metrics["bms_redundancy_failovers_total"] == {'node="backup"': 2}  # the takeover count


def test_a_stale_status_leaves_the_timing_out(client, as_backup):
    as_backup.set_role("active", age=60)
    metrics = parse_metrics(client.get("/metrics").content.decode())
    assert "bms_engine_loop_lag_ms" not in metrics
    assert "bms_heartbeat_jitter_ms" not in metrics


def test_empty_windows_leave_the_quantiles_out(client, as_main):
    row = as_main.set_role("active")
    row.status["engine_loop"] |= {"samples": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    row.status["heartbeat_jitter"]["sent"] = {"intervals": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    row.save()
    metrics = parse_metrics(client.get("/metrics").content.decode())
    assert "bms_engine_loop_lag_ms" not in metrics
    assert metrics["bms_engine_loop_lag_samples"] == {'node="main"': 0}
    assert set(metrics["bms_heartbeat_jitter_ms"]) == {
        f'node="main",partner="backup",direction="received",quantile="{q}"' for q in ("0.5", "0.99", "1")
    }


@pytest.fixture
def alone(settings, db):
    settings.BMS_PARTNER_ADDRESS = ""
    settings.BMS_NODE_NAME = "solo"
    yield
    nodeview.use_loop_watch(None)


def test_a_node_alone_shows_the_loop_lag_of_the_engine_in_its_process(client, alone):
    watch = LoopWatch(tick=0.02, window=60, slow=0.05)
    now = time.monotonic()
    for i, lag in enumerate([0.001] * 98 + [0.03, 0.2]):
        watch.record(lag, now - 2 + i * 0.02)
    nodeview.use_loop_watch(watch.summary)
    metrics = parse_metrics(client.get("/metrics").content.decode())
    lag = metrics["bms_engine_loop_lag_ms"]
    assert lag['node="solo",quantile="0.5"'] == 1.0
    assert lag['node="solo",quantile="1"'] == 200.0
    assert 30 < lag['node="solo",quantile="0.99"'] < 200
    assert metrics["bms_engine_loop_lag_samples"] == {'node="solo"': 100}
    assert metrics["bms_engine_loop_slow_ticks_total"] == {'node="solo"': 1}
    assert "bms_heartbeat_jitter_ms" not in metrics  # no partner


def test_a_web_process_without_the_engine_shows_no_loop_lag(client, alone):
    metrics = parse_metrics(client.get("/metrics").content.decode())
    assert "bms_engine_loop_lag_ms" not in metrics
    assert metrics["bms_redundancy_pair_configured"] == {'node="solo"': 0}


# --- the pair service records the heartbeats' jitter into its status ----------------------------------------------


class FakeConnection:
    """A partner connection that keeps what is sent on it."""

    outgoing = False

    def __init__(self) -> None:
        self.open = True
        self.sent: list[dict[str, Any]] = []

    def send_nowait(self, body: dict[str, Any]) -> None:
        self.sent.append(body)

    def close(self) -> None:
        self.open = False


@pytest.fixture
def service(settings):
    settings.BMS_PARTNER_ADDRESS = "127.0.0.1:1"
    settings.BMS_SYNC_SECRET = "0123456789abcdef-test"
    settings.BMS_NODE_NAME = "main"
    settings.BMS_HEARTBEAT_PERIOD_MS = 50
    service = PairService(pair_config.load())
    service.attach(Engine(InMemoryChannelLayer(), role=service.role))
    service.machine = RoleMachine("main", True, 3, Timing(0.15, 1, 1, 1), True, False, 0.0)
    service.machine.enter(Decision(Role.ACTIVE, 3, "test"), 0.0)
    service.role.machine = service.machine
    return service


def test_heartbeats_sent_and_received_are_measured_against_the_period(service):
    link = FakeConnection()
    service.incoming.add(link)
    for pause in (0.05, 0.09, 0.0):  # intervals of about 50 and 90 ms: deviations about 0 and 40 ms
        service._send_heartbeat()
        time.sleep(pause)
    assert len(link.sent) == 3
    service.incoming.clear()
    service._send_heartbeat()  # no connection: nothing sent, and the gap that follows is not jitter
    time.sleep(0.2)
    service.incoming.add(link)
    service._send_heartbeat()

    partner = {**link.sent[0], "node": "backup", "role": "standby"}
    service._on_heartbeat(partner)
    time.sleep(0.12)  # 70 ms late
    service._on_heartbeat(partner)

    status = build_status(service, time.monotonic())
    jitter = status["heartbeat_jitter"]
    assert jitter["period_ms"] == 50 and jitter["window_s"] == 60
    sent = jitter["sent"]
    assert sent["intervals"] == 2, sent  # the 200 ms without a connection is left out
    assert 30 <= sent["max_ms"] < 120, sent
    assert sent["p50_ms"] <= sent["p99_ms"] <= sent["max_ms"]
    received = jitter["received"]
    assert received["intervals"] == 1 and 60 <= received["max_ms"] < 200, received
    # The engine has not started: its loop watch has nothing yet, and says so.
    assert status["engine_loop"]["samples"] == 0 and status["engine_loop"]["p99_ms"] is None
    assert status["failovers"] == 0
