"""A device made unreachable and then fixed by reconfiguration: the event log shows the outage and its end.

The real engine polls the simulated building (pymodbus on loopback). The
device's port is set wrong in the database (the engine restarts its poller:
comm_lost), then set right again (another restart: the new poller must log
comm_restored although it never saw the loss itself).
"""

import socket

from asgiref.sync import sync_to_async

from bms.engine.image import COMM_FAILURE, GOOD
from bms.events.models import Event
from bms.points.models import Device
from tests.engine.conftest import eventually

# generous: the machine is shared, and each step waits for a config check, a poller restart and the event outbox
WAIT = 20.0


def comm_events() -> list[str]:
    return list(
        Event.objects.filter(source="plant", kind__startswith="comm_").order_by("id").values_list("kind", flat=True)
    )


async def set_port(port: int) -> None:
    device = await Device.objects.aget(name="plant")
    device.port = port
    await sync_to_async(device.save)()  # save() bumps the configuration revision the engine watches


async def test_a_device_fixed_by_reconfiguration_logs_comm_restored(engine, plant):
    names = [name for name in engine.image.points if ":" not in name]  # points, not alarm entries
    await eventually(lambda: all(engine.image.points[n].quality == GOOD for n in names), WAIT, "all points good")
    first = engine.pollers["plant"]
    # A TCP port that is bound but not listening refuses connections, and nobody else can take it meanwhile.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        await set_port(closed.getsockname()[1])
        await eventually(lambda: engine.pollers.get("plant") not in (None, first), WAIT, "poller restarted")
        await eventually(
            lambda: all(engine.image.points[n].quality == COMM_FAILURE for n in names), WAIT, "all comm_failure"
        )
        await eventually(lambda: comm_events() == ["comm_lost"], WAIT, "comm_lost logged", db=True)
        broken = engine.pollers["plant"]
        assert broken.online is False

        await set_port(plant.port)
        await eventually(lambda: engine.pollers.get("plant") not in (None, broken), WAIT, "poller restarted again")
        await eventually(lambda: all(engine.image.points[n].quality == GOOD for n in names), WAIT, "recovery")
    kinds = await eventually(
        lambda: (kinds := comm_events())[-1:] == ["comm_restored"] and kinds, WAIT, "comm_restored logged", db=True
    )
    assert kinds == ["comm_lost", "comm_restored"]  # one outage, one recovery: no second loss from the restart
    assert engine.pollers["plant"].online is True


async def test_a_restart_while_the_device_is_still_unreachable_logs_no_second_loss(engine, plant):
    await eventually(lambda: engine.pollers["plant"].online is True, WAIT, "online")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        await set_port(closed.getsockname()[1])
        await eventually(lambda: comm_events() == ["comm_lost"], WAIT, "comm_lost logged", db=True)
        broken = engine.pollers["plant"]
        device = await Device.objects.aget(name="plant")
        device.timeout = device.timeout + 0.5  # another change that does not fix the link
        await sync_to_async(device.save)()
        await eventually(lambda: engine.pollers.get("plant") not in (None, broken), WAIT, "poller restarted")
        still = engine.pollers["plant"]
        cycles = still.cycles
        await eventually(lambda: still.cycles >= cycles + 5 and still.connect_attempts >= 1, WAIT, "polls failing")
        assert still.online is False
    await set_port(plant.port)
    kinds = await eventually(
        lambda: (kinds := comm_events())[-1:] == ["comm_restored"] and kinds, WAIT, "comm_restored logged", db=True
    )
    assert kinds == ["comm_lost", "comm_restored"]
