"""The production layout: engine (``runengine``) and web (``runbms --no-engine``) as separate processes.

Live values cross Redis; commands cross PostgreSQL, with a wake-up over Redis.
"""

import asyncio

import pytest

from tests.support.processes import Node
from tests.system.test_live_websocket import connect, read_device_register, recv, until_value, write_device_register

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def split_node(simulator):
    bms = Node(simulator.port, name="split", split=True)
    try:
        bms.start()
        yield bms
    finally:
        bms.drop()


async def test_live_values_cross_from_the_engine_process(split_node, simulator):
    session = split_node.session()
    async with connect(split_node, session) as ws:
        snapshot = await recv(ws, 10)
        # The engine is a separate process that may still be starting when the web
        # port answers: the consumer says so and asks again, then the snapshot comes.
        while snapshot["type"] == "error" and snapshot["code"] == "engine_unavailable":
            snapshot = await recv(ws, 10)
        assert snapshot["type"] == "snapshot"
        assert snapshot["points"]["meter_energy"]["quality"] == "good"
        await write_device_register(simulator.port, 12, 14.5)  # ahu2_supply_setpoint
        await until_value(ws, snapshot["seq"], "ahu2_supply_setpoint", 14.5)


def test_a_write_is_executed_by_the_engine_process(split_node, simulator):
    session = split_node.session()
    status, body = session.post_json("/api/points/ahu1_supply_setpoint/write", {"value": 13.5})
    assert (status, body["status"]) == (200, "succeeded"), body
    assert asyncio.run(read_device_register(simulator.port, 10)) == 13.5


def test_the_web_process_alone_reports_its_state(split_node):
    status, body = split_node.session("viewer", "viewer-pass-1").get_json("/api/points/")
    assert status == 200
    assert body["engine"] is True
    # The live values come from the engine process: every point has one, with a quality and a seq.
    assert body["seq"] > 0 and body["points"]
    live = {point["name"]: point["live"] for point in body["points"]}
    assert all(row is not None and row["quality"] and row["seq"] <= body["seq"] for row in live.values()), live
    assert any(row["quality"] == "good" for row in live.values()), live
