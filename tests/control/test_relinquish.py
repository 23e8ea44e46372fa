"""Relinquish (a null value at a priority) through the one write path, down to a real BACnet device."""

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.core.management import call_command
from django.db import connections

from bms.control.models import Command
from bms.control.services import CommandRejected, submit_write
from bms.engine.runner import Engine
from bms.points import bacnet_tools
from bms.points.models import Point
from tests.support.bacnet import SimulatorWithBacnet
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def simulator():
    sim = SimulatorWithBacnet()
    yield sim
    sim.stop()


def test_relinquish_is_refused_where_it_means_nothing(db):
    call_command("loaddemo", modbus_port=15999, bacnet_port=47999, verbosity=0)
    # a Modbus point's slots are the server's (ADR 0016): a relinquish means something there, but only at a priority
    with pytest.raises(CommandRejected, match=r"wrong_type|priority"):
        submit_write(user=None, point_name="zone1_setpoint", value=None, source="code")
    with pytest.raises(CommandRejected, match="needs the priority"):
        submit_write(user=None, point_name="chw_setpoint", value=None, source="code")
    assert not Command.objects.exists()


async def test_a_relinquish_releases_the_slot_on_the_device(simulator, transactional_db):
    await sync_to_async(call_command)(
        "loaddemo", modbus_port=simulator.modbus_port, bacnet_port=simulator.bacnet_port, poll_interval=0.2, verbosity=0
    )
    engine = Engine(InMemoryChannelLayer(), publish_min_interval=0)
    await engine.start()
    try:

        async def run(value, command_id):
            submission = await sync_to_async(submit_write)(
                user=None, point_name="chw_setpoint", value=value, priority=8, command_id=command_id, source="code"
            )
            return await eventually(
                lambda: (
                    Command.objects.get(pk=submission.command.pk).status in Command.FINAL
                    and Command.objects.get(pk=submission.command.pk)
                ),
                wait=10,
                db=True,
                message=f"command {command_id} final",
            )

        point = await sync_to_async(Point.objects.select_related("device").get)(name="chw_setpoint")
        written = await run(9.5, "set-8")
        assert written.status == Command.SUCCEEDED, written.error
        held = await sync_to_async(bacnet_tools.read_priority_array)(point)
        assert held["priority_array"]["8"] == 9.5 and held["active_priority"] == 8
        released = await run(None, "release-8")
        assert released.status == Command.SUCCEEDED, released.error
        state = await sync_to_async(bacnet_tools.read_priority_array)(point)
        assert state["priority_array"]["8"] is None and state["active_priority"] != 8
    finally:
        await engine.stop()
        # sync_to_async's shared thread keeps a connection; close it so the test database can be dropped.
        await sync_to_async(connections.close_all)()
