"""The active node's Redis goes away and comes back (issue 15 item 5), with a real node, Redis and websockets.

The node runs in the production shape against a Redis server of its own,
which the test kills (SIGKILL, as a crash or an OOM kill would) and starts
again on the same port. Before this was handled, connected clients heard
nothing and stayed open, new connections got HTTP 500, ``/healthz`` said
``ok``, and the log grew by a traceback every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.error
import urllib.request

import pytest
import redis
import websockets

from bms.realtime import layer_health
from bms.realtime.layer_health import CLOSE_LAYER_DOWN, LayerOutageLogFilter, LayerProbe
from tests.support.net import silent
from tests.support.processes import Node, Simulator
from tests.support.redis_server import RedisServer
from tests.system.test_live_websocket import (
    connect,
    read_device_register,
    recv,
    until_value,
    write_device_register,
)

pytestmark = pytest.mark.system

HEALTH_KEYS = {"node", "role", "epoch", "active_node", "active_url", "partner", "partner_url", "pair", "status"}


@pytest.fixture
def redis_node(tmp_path):
    """``(node, redis_server, simulator)``: a node whose channel layer is a Redis the test controls."""
    server = RedisServer(tmp_path)
    server.start()
    device = Simulator()
    node = Node(device.port)
    try:
        node.env["REDIS_URL"] = server.url
        node.start()
        yield node, server, device
    finally:
        node.drop()
        device.stop()
        server.kill()
        print(f"node log: {node.log_path}")


def healthz(node, path: str = "/healthz") -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{node.base_url}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def until_health(node, layer: str, within: float = 20.0) -> dict:
    deadline = time.monotonic() + within
    while True:
        status, body = await asyncio.to_thread(healthz, node)
        assert status == 200, (status, body)
        if body.get("channel_layer") == layer:
            return body
        assert time.monotonic() < deadline, f"/healthz still says {body} after {within} s"
        await asyncio.sleep(0.1)


async def until_closed_for_outage(ws, within: float = 15.0) -> dict:
    """Read until the outage status message and the 4503 close; return the status message."""
    status = None
    deadline = time.monotonic() + within
    with contextlib.suppress(websockets.exceptions.ConnectionClosed):
        while True:
            try:
                message = await recv(ws, deadline - time.monotonic())
            except TimeoutError:
                raise AssertionError(f"the client heard of no outage within {within} s (status: {status})") from None
            if message["type"] == "status":
                status = message
    assert ws.close_code == CLOSE_LAYER_DOWN, (ws.close_code, ws.close_reason)
    assert status is not None and status["channel_layer"] == "down", status
    return status


async def reconnect_for_snapshot(node, session, within: float = 30.0):
    """Reconnect as a client does (refusals included) until a connection gets its snapshot; a connection told that
    the engine has not answered yet waits on it (the snapshot follows)."""
    deadline = time.monotonic() + within
    refusals = 0
    while True:
        ws = await connect(node, session)
        try:
            message = await recv(ws, 10)
            while message["type"] == "error" and message["code"] == "engine_unavailable":
                message = await recv(ws, max(0.1, deadline - time.monotonic()))
        except (websockets.exceptions.ConnectionClosed, TimeoutError):
            message = None
        if message is not None and message["type"] == "snapshot":
            return ws, message, refusals
        await ws.close()
        refusals += 1
        assert message is None or message["type"] == "status", message
        assert time.monotonic() < deadline, f"no snapshot within {within} s ({refusals} refusals)"
        await asyncio.sleep(0.3)


@pytest.mark.timeout(300)
async def test_clients_and_health_learn_of_a_redis_outage_and_live_data_resumes(redis_node):
    node, server, device = redis_node
    session = node.session()
    body = await until_health(node, "ok")
    assert HEALTH_KEYS <= set(body) and body["status"] == "ok", body

    async with connect(node, session) as ws:
        snapshot = await recv(ws)
        assert snapshot["type"] == "snapshot"
        await write_device_register(device.port, 2, 23.5)  # zone2_setpoint at hr:2
        await until_value(ws, snapshot["seq"], "zone2_setpoint", 23.5)

        log_before = len(node.log_text())
        server.kill()
        killed = time.monotonic()
        status = await until_closed_for_outage(ws)
        told_after = time.monotonic() - killed
    print(f"connected client told after {told_after:.2f} s: {status}")
    assert told_after < 10

    # A new connection is answered with the same status and close code, not HTTP 500.
    started = time.monotonic()
    async with connect(node, session) as refused:
        await until_closed_for_outage(refused)
    print(f"new connection refused with {CLOSE_LAYER_DOWN} in {time.monotonic() - started:.2f} s")

    body = await until_health(node, "down")
    health_down_after = time.monotonic() - killed
    assert body["status"] == "degraded" and HEALTH_KEYS <= set(body), body
    status_code, active_body = await asyncio.to_thread(healthz, node, "/healthz/active")
    assert (status_code, active_body["channel_layer"], active_body["status"]) == (200, "down", "degraded")
    print(f"/healthz degraded {health_down_after:.2f} s after the kill")
    # The point list still answers (from the database), saying live values are unavailable: not an HTML 500.
    api_status, points = await asyncio.to_thread(session.get_json, "/api/points/")
    assert (api_status, points["engine"]) == (200, False) and points["points"], (api_status, points)

    # Values keep changing while Redis is away: the engine must not log each failed publish.
    for value in (19.0, 19.5, 20.0, 20.5):
        await write_device_register(device.port, 4, value)
        await asyncio.sleep(0.3)
    # Long enough for the pub/sub layer's once-a-second reconnect errors to have repeated several times.
    await asyncio.sleep(max(0.0, 8.0 - (time.monotonic() - killed)))
    outage_log = node.log_text()[log_before:]
    tracebacks = outage_log.count("Traceback")
    lines = len(outage_log.splitlines())
    print(f"log during {time.monotonic() - killed:.1f} s of outage: {lines} line(s), {tracebacks} traceback(s)")
    assert tracebacks <= 2, outage_log[-4000:]
    assert lines <= 20, outage_log[-4000:]
    assert "Exception inside application" not in outage_log

    server.start()
    restarted = time.monotonic()
    ws, snapshot, refusals = await reconnect_for_snapshot(node, session)
    snapshot_after = time.monotonic() - restarted
    try:
        assert snapshot["points"]["zone3_setpoint"]["value"] == 20.5  # written during the outage
        await write_device_register(device.port, 2, 24.5)
        await until_value(ws, snapshot["seq"], "zone2_setpoint", 24.5)
        delta_after = time.monotonic() - restarted
    finally:
        await ws.close()
    await until_health(node, "ok")
    health_ok_after = time.monotonic() - restarted
    print(
        f"after restart: snapshot {snapshot_after:.2f} s ({refusals} refusal(s) first), "
        f"live delta {delta_after:.2f} s, /healthz ok {health_ok_after:.2f} s"
    )
    assert "channel layer reachable again" in node.log_text()[log_before:]


def test_the_probe_is_bounded_cached_and_follows_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    now = [0.0]
    probe = LayerProbe([{"address": server.url}], timeout=0.5, max_age=1.0, clock=lambda: now[0])
    try:
        assert probe.is_up()
        server.kill()
        assert probe.is_up(), "a fresh answer is reused for max_age"
        now[0] += 1.5
        started = time.monotonic()
        assert not probe.is_up()
        print(f"probe against a dead Redis took {time.monotonic() - started:.3f} s")
        assert time.monotonic() - started < 2.0
        assert probe.reason
        server.start()
        now[0] += 1.5
        assert probe.is_up()  # the pooled connection Redis dropped is replaced within the one probe
    finally:
        server.kill()


def test_the_embedded_layer_is_always_ok():
    # tests run with the in-memory layer (bms.settings.test): nothing to reach, nothing to probe
    assert layer_health.probe() is None
    assert layer_health.add_to_health({"status": "ok"}) == {"status": "ok", "channel_layer": "ok"}


def test_channels_redis_outage_errors_become_one_line_per_outage():
    now = [0.0]
    keep = LayerOutageLogFilter(quiet_after=10.0, remind_every=300, clock=lambda: now[0])

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException as raised:
            info = (type(raised), raised, raised.__traceback__)
        return logging.LogRecord("channels_redis.pubsub", logging.ERROR, __file__, 1, "Unexpected", (), info)

    passed = []
    for _ in range(601):  # ten minutes of once-a-second receive failures after the first
        now[0] += 1.0
        item = record(redis.exceptions.ConnectionError("Error 111 connecting"))
        if keep.filter(item):
            passed.append(item)
    assert len(passed) == 3  # the first, and a reminder at 300 and 600 repeats
    assert all(item.exc_info is None for item in passed)
    assert "Error 111" in passed[0].getMessage()
    now[0] += 60.0  # a quiet minute: the next error starts a new outage
    assert keep.filter(record(ConnectionRefusedError("refused")))
    bug = record(ValueError("a bug, not an outage"))
    assert keep.filter(bug) and bug.exc_info is not None  # other errors keep their traceback


@pytest.mark.timeout(300)
async def test_a_silent_redis_never_stops_the_engine_and_live_data_resumes_when_it_answers(redis_node):
    # Packets to Redis dropped (its host gone without a reset): unlike a killed Redis, nothing is refused, every
    # request waits. The engine must go on polling and writing (its commands travel through the database), and
    # live data must come back soon after Redis answers again.
    node, server, device = redis_node
    session = node.session()
    await until_health(node, "ok")
    log_before = len(node.log_text())
    silence = 60.0  # long enough for TCP's retransmissions to back off past 25 s
    with silent(server.port):
        started = time.monotonic()
        body = await until_health(node, "down", within=20)
        print(f"/healthz says the channel layer is down {time.monotonic() - started:.1f} s into the silence")
        await asyncio.sleep(10)  # the layer's connections meet their timeouts meanwhile
        for value in (21.25, 21.75):
            status, answer = await asyncio.to_thread(
                session.post_json, "/api/points/zone4_setpoint/write", {"value": value}
            )
            assert status in (200, 202), (status, answer)
            deadline = time.monotonic() + 20
            while (at_device := await read_device_register(device.port, 6)) != value:
                assert time.monotonic() < deadline, f"a write during the silence never reached the device ({at_device})"
                await asyncio.sleep(0.2)
            print(f"write of {value} at the device {time.monotonic() - started:.1f} s into the silence")
        await write_device_register(device.port, 2, 22.5)  # a change the engine must read during the silence
        await asyncio.sleep(max(0.0, silence - (time.monotonic() - started)))
    assert body["status"] == "degraded", body
    restored = time.monotonic()
    ws, snapshot, refusals = await reconnect_for_snapshot(node, session, within=60)
    snapshot_after = time.monotonic() - restored
    try:
        assert snapshot["points"]["zone2_setpoint"]["value"] == 22.5, "read during the silence"
        assert snapshot["points"]["zone4_setpoint"]["value"] == 21.75, "written during the silence"
        await write_device_register(device.port, 2, 23.25)
        await until_value(ws, snapshot["seq"], "zone2_setpoint", 23.25, wait=30)
        delta_after = time.monotonic() - restored
    finally:
        await ws.close()
    print(f"after the silence: snapshot {snapshot_after:.1f} s ({refusals} refusal(s)), live delta {delta_after:.1f} s")
    assert delta_after < 20, f"live data came back {delta_after:.1f} s after Redis answered again"
    outage_log = node.log_text()[log_before:]
    assert "Exception inside application" not in outage_log, outage_log[-4000:]
