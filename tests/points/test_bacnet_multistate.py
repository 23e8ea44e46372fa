"""Multi-state objects import with their range 1..numberOfStates, so the server refuses a bad state itself.

The device is the simulator's real bacpypes3 device: ``plant_mode`` is a commandable multi-state value
with 3 states, ``tower_fan_speed`` a multi-state output with 3, ``chiller_state`` a multi-state input with 4.
"""

import asyncio
import io

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command

from bms.control.models import Command
from bms.control.services import CommandRejected, submit_write
from bms.points.models import Point
from drivers import bacnet_discovery as discovery
from drivers import bacnet_stack as stack
from drivers.simulator.bacnet_device import OBJECTS, STATE_TEXTS


def test_discovery_reads_the_number_of_states(simulator):
    async def discover():
        app = await discovery.open_endpoint("127.0.0.1:0")
        try:
            (device,) = await discovery.who_is_with(app, f"127.0.0.1:{simulator.bacnet_port}", None, 2.0)
            return await discovery.read_objects(app, device)
        finally:
            stack.close_application(app)

    states = {found.name: found.states for found in asyncio.run(discover())}
    expected = {sim.name: len(STATE_TEXTS[sim.name]) if sim.name in STATE_TEXTS else None for sim in OBJECTS}
    assert states == expected


def test_an_imported_multi_state_point_refuses_a_state_the_device_does_not_have(db, simulator):
    call_command(
        "bacnet",
        "discover",
        "--address",
        f"127.0.0.1:{simulator.bacnet_port}",
        "--wait",
        "1",
        "--import",
        "chiller",
        stdout=io.StringIO(),
    )
    points = {point.name: point for point in Point.objects.filter(device__name="chiller")}
    for name, texts in STATE_TEXTS.items():
        point = points[f"chiller.{name}"]
        assert (point.min_value, point.max_value) == (1, len(texts)), name
    assert (points["chiller.chw_setpoint"].min_value, points["chiller.chw_setpoint"].max_value) == (None, None)

    operator = User.objects.create_user("op", password="pw")
    operator.user_permissions.add(Permission.objects.get(codename="write_point"))
    with pytest.raises(CommandRejected) as refused:
        submit_write(user=operator, point_name="chiller.plant_mode", value=4)
    assert refused.value.code == "out_of_range"
    assert refused.value.status == 400
    assert "4 is above the highest allowed value 3" in refused.value.message
    with pytest.raises(CommandRejected) as zero:
        submit_write(user=operator, point_name="chiller.plant_mode", value=0)
    assert zero.value.code == "out_of_range"
    assert not Command.objects.exists()  # nothing recorded, nothing sent to the device
    accepted = submit_write(user=operator, point_name="chiller.plant_mode", value=3)
    assert accepted.created and accepted.command.value == 3
