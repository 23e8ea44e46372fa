"""The live websocket through a real Daphne process (production shape: PostgreSQL + Redis)."""

import asyncio
import json

import pytest
import websockets
from pymodbus.client import AsyncModbusTcpClient

from drivers.modbus import decode_registers, encode_registers

pytestmark = pytest.mark.system


def ws_url(node) -> str:
    return f"ws://127.0.0.1:{node.port}/ws/live/"


def connect(node, session=None, origin=None):
    headers = {"Cookie": session.cookie_header} if session else {}
    return websockets.connect(ws_url(node), origin=origin or node.base_url, additional_headers=headers)


async def recv(ws, wait: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), wait))


async def write_device_register(port: int, offset: int, value: float) -> None:
    """Change a setpoint at the device itself, as a local panel would."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()
    try:
        response = await client.write_registers(offset, encode_registers(value, "float32"), device_id=1)
        assert not response.isError()
    finally:
        client.close()


async def read_device_register(port: int, offset: int) -> float:
    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()
    try:
        response = await client.read_holding_registers(offset, count=2, device_id=1)
        return decode_registers(response.registers, "float32")
    finally:
        client.close()


async def until_value(ws, seq: int, name: str, value, wait: float = 10.0) -> tuple[int, dict]:
    """Read the stream as a client must, until ``name`` has ``value``; return (seq, state).

    Every delta must continue exactly where the client is. The server may
    also push a fresh snapshot at any time (after it healed a loss upstream):
    the client then starts over from that snapshot's seq.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        message = await recv(ws, deadline - loop.time())
        assert message["type"] in ("delta", "snapshot"), message
        if message["type"] == "delta":
            assert message["from"] == seq, f"gap: client at {seq}, delta from {message['from']}"
            assert message["seq"] > seq
        seq = message["seq"]
        state = message["points"].get(name)
        if state and state["value"] == value:
            return seq, state


async def test_snapshot_then_coalesced_deltas(node, simulator):
    session = node.session()
    async with connect(node, session) as ws:
        snapshot = await recv(ws)
        assert snapshot["type"] == "snapshot"
        assert {"zone1_temp", "zone1_setpoint", "meter_energy"} <= set(snapshot["points"])
        seq = snapshot["seq"]
        assert seq > 0
        await write_device_register(simulator.port, 2, 24.25)  # zone2_setpoint at hr:2
        seq, state = await until_value(ws, seq, "zone2_setpoint", 24.25)
        assert state["quality"] == "good"
        assert state["time"].endswith("+00:00")
        assert state["seq"] <= seq


async def test_gap_gets_a_fresh_snapshot(node, simulator):
    session = node.session()
    async with connect(node, session) as ws:
        seq = (await recv(ws))["seq"]
        await write_device_register(simulator.port, 4, 17.5)  # zone3_setpoint
        while (lost := await recv(ws))["type"] != "delta":  # pretend the next delta never arrived
            pass
        await write_device_register(simulator.port, 4, 18.5)
        while True:
            message = await recv(ws)
            if message["type"] == "delta" and message["from"] != seq:
                break  # the client notices the gap ...
        await ws.send(json.dumps({"type": "resync"}))  # ... and asks for a snapshot
        while (message := await recv(ws))["type"] != "snapshot":
            pass
        assert message["seq"] >= lost["seq"]
        if message["points"]["zone3_setpoint"]["value"] != 18.5:
            await until_value(ws, message["seq"], "zone3_setpoint", 18.5)


async def test_anonymous_connection_is_refused(node):
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with connect(node):
            pass
    assert refused.value.response.status_code == 403


async def test_foreign_origin_is_refused(node):
    session = node.session()
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with connect(node, session, origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403


async def test_bad_messages_get_errors_and_keep_the_socket(node):
    session = node.session()
    async with connect(node, session) as ws:
        assert (await recv(ws))["type"] == "snapshot"
        for frame, code in [
            ("this is not json", "malformed"),
            ("[1, 2]", "malformed"),
            (json.dumps({"type": "explode"}), "unknown_type"),
            (json.dumps({"type": "subscribe", "points": "zone1_temp"}), "malformed"),
            (json.dumps({"type": "subscribe", "points": ["zone1_temp", "no_such_point"]}), "unknown_point"),
        ]:
            await ws.send(frame)
            while (message := await recv(ws))["type"] == "delta":
                pass
            assert message == {**message, "type": "error", "code": code}, message
        await ws.send(b"\x00\x01binary")
        while (message := await recv(ws))["type"] == "delta":
            pass
        assert message["code"] == "malformed"
        await ws.send(json.dumps({"type": "ping"}))
        while (message := await recv(ws))["type"] == "delta":
            pass
        assert message == {"type": "pong"}


async def test_subscribe_limits_the_stream(node, simulator):
    session = node.session()
    async with connect(node, session) as ws:
        assert (await recv(ws))["type"] == "snapshot"
        await ws.send(json.dumps({"type": "subscribe", "points": ["zone4_setpoint"]}))
        while (snapshot := await recv(ws))["type"] != "snapshot":
            pass
        assert set(snapshot["points"]) == {"zone4_setpoint"}
        await write_device_register(simulator.port, 6, 19.75)
        await until_value(ws, snapshot["seq"], "zone4_setpoint", 19.75)
        await write_device_register(simulator.port, 6, 20.75)
        message = await recv(ws)
        assert set(message["points"]) == {"zone4_setpoint"}
