"""BACnet local endpoints and device identity, against real bacpypes3 devices on loopback.

A fixed ``local_address`` is one endpoint per process: another process (or a
plain socket) holding the port makes the driver refuse it, drivers of this
process share it, and a commissioning read never touches it, so the engine's
COV subscriptions survive all three. Subscriber process identifiers differ
between starts. A device that answers with another instance than the
configured one is a communication failure naming both.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from bms.engine.config import DeviceConfig, PointConfig
from bms.engine.image import COMM_FAILURE, GOOD, ProcessImage
from bms.engine.management.commands.poll import read_device
from bms.engine.poller import DevicePoller
from bms.engine.scaling import Scaling
from drivers import bacnet_stack as stack
from drivers.bacnet import BacnetDriver
from drivers.base import CommunicationError, DeviceSpec, WrongDevice
from drivers.simulator.bacnet_device import SimulatedBacnetDevice
from tests.support.bacnet import ALL_POINTS, driver_for, wait_until

ROOT = Path(__file__).resolve().parents[2]

# Another process that opens a COV driver on the same fixed local address, reads once and closes (which
# cancels its subscriptions): what `poll --once` or a second engine did before endpoints were exclusive.
OTHER_PROCESS = """
import asyncio, sys
from drivers import bacnet_stack as stack
from drivers.bacnet import BacnetDriver
from drivers.base import CommunicationError, DeviceSpec, PointSpec

async def main():
    port, instance, local = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    options = {"device_instance": instance, "local_address": local, "cov": True, "retries": 0}
    driver = BacnetDriver(DeviceSpec("other", "127.0.0.1", port, timeout=0.5, options=options))
    try:
        await driver.connect()
        await driver.read([PointSpec("t", "analog-input:1", "float32")])
        print("connected")
    except CommunicationError as exc:
        print("refused:", exc)
    finally:
        await driver.close()

asyncio.run(main())
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cov_driver(device: SimulatedBacnetDevice, local: str, **options) -> BacnetDriver:
    return driver_for(device, local_address=local, cov=True, cov_lifetime=300, **options)


def started_poller(device: SimulatedBacnetDevice, instance: int) -> tuple[DevicePoller, ProcessImage, list]:
    """The engine's poller for ``device`` configured with ``instance``, running; with its image and events."""
    spec = DeviceSpec("bac", "127.0.0.1", device.port, timeout=0.3, options={"device_instance": instance})
    points = tuple(PointConfig(point, Scaling(point.data_type), 0.0, "bac") for point in ALL_POINTS)
    image = ProcessImage()
    image.define([point.name for point in points])
    events: list = []
    poller = DevicePoller(
        DeviceConfig(spec, "bacnet", 0.05, points),
        image,
        on_change=lambda: None,
        on_event=lambda *event: events.append(event),
    )
    poller.reconnect_cap = 0.2  # reconnect often, so that repeated refusals show within the test
    poller.start()
    return poller, image, events


def notified(driver: BacnetDriver, name: str, value: float) -> bool:
    reading = driver._cov_values.get(name)
    return reading is not None and reading.value == value


async def test_a_fixed_port_held_by_another_process_is_refused_and_our_subscriptions_survive(bacnet_device):
    local = f"127.0.0.1:{free_udp_port()}"
    engine = cov_driver(bacnet_device, local)
    await engine.connect()
    try:
        await engine.read(ALL_POINTS)
        assert all(entry["active"] for entry in engine.subscription_state().values())
        subscribes = bacnet_device.requests["SubscribeCOVRequest"]
        other = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            OTHER_PROCESS,
            str(bacnet_device.port),
            str(bacnet_device.instance),
            local,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(other.communicate(), 60)
        assert out.decode().strip() == (
            f"refused: cannot open a BACnet endpoint on {local}: binding UDP {local}: Address already in use: "
            "another BACnet endpoint holds it (another BMS process, a commissioning tool or other BACnet software); "
            "sharing it would mix that program's requests and COV subscriptions with ours, so it is refused"
        ), err.decode()
        # it never reached the device: neither a subscription nor a cancel
        assert bacnet_device.requests["SubscribeCOVRequest"] == subscribes
        bacnet_device.set("chw_supply_temp", 9.75)
        await wait_until(lambda: notified(engine, "chw_supply_temp", 9.75), what="a COV notification to the engine")
    finally:
        await engine.close()


async def test_a_port_held_by_any_socket_is_refused_with_the_address(bacnet_device):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        # like bacpypes3 in another program: SO_REUSEPORT would let a second bacpypes3 bind share it
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        local = f"127.0.0.1:{holder.getsockname()[1]}"
        driver = cov_driver(bacnet_device, local)
        with pytest.raises(
            CommunicationError, match=f"binding UDP {local}: Address already in use: another BACnet endpoint holds it"
        ):
            await driver.connect()
        assert not driver.connected
        await driver.close()


def test_only_the_unicast_socket_must_be_free_a_shared_broadcast_socket_loses_nothing():
    """Every socket bound to a broadcast address gets a copy of each broadcast; unicast goes to one sharer only."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as bacpypes3 in another program
        holder.bind(("127.255.255.255", 0))
        port = holder.getsockname()[1]
        assert stack.check_local_address(f"127.0.0.1/8:{port}") == (("127.0.0.1", port), ("127.255.255.255", port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with pytest.raises(stack.PortInUse, match=f"binding UDP 127.0.0.1:{port}: Address already in use"):
            stack.check_local_address(f"127.0.0.1/8:{port}")


async def test_drivers_of_one_process_share_the_endpoint_with_distinct_process_ids(bacnet_device):
    local = f"127.0.0.1:{free_udp_port()}"
    first = cov_driver(bacnet_device, local)
    second = cov_driver(bacnet_device, local)
    await first.connect()
    try:
        await first.read(ALL_POINTS)
        await second.connect()
        await second.read(ALL_POINTS)
        assert second._app is first._app  # one socket for the address
        ids_first = {entry["process_id"] for entry in first.subscription_state().values()}
        ids_second = {entry["process_id"] for entry in second.subscription_state().values()}
        assert len(ids_first) == len(ids_second) == len(ALL_POINTS)
        assert not ids_first & ids_second
        await second.close()  # cancels only its own subscriptions; the shared socket stays open
        bacnet_device.set("pump1_status", True)
        await wait_until(lambda: notified(first, "pump1_status", True), what="a COV notification to the first")
        assert (await first.read(ALL_POINTS))["chw_setpoint"].ok
    finally:
        await second.close()
        await first.close()
    # the last user closed it: the address is free again
    reopened = cov_driver(bacnet_device, local)
    await reopened.connect()
    await reopened.close()


async def test_process_ids_differ_between_two_starts(bacnet_device):
    local = f"127.0.0.1:{free_udp_port()}"
    starts = []
    for _ in range(2):
        driver = cov_driver(bacnet_device, local)
        await driver.connect()
        try:
            await driver.read(ALL_POINTS)
            starts.append({entry["process_id"] for entry in driver.subscription_state().values()})
        finally:
            await driver.close()
    assert len(starts[0]) == len(starts[1]) == len(ALL_POINTS)
    assert not starts[0] & starts[1]


async def test_poll_once_reads_from_an_ephemeral_port_and_leaves_the_engines_cov_alone(bacnet_device):
    local = f"127.0.0.1:{free_udp_port()}"
    engine = cov_driver(bacnet_device, local)
    await engine.connect()
    try:
        await engine.read(ALL_POINTS)
        spec = DeviceSpec("bac", "127.0.0.1", bacnet_device.port, timeout=0.5, options=dict(engine.device.options))
        points = tuple(PointConfig(point, Scaling(point.data_type), 0.0, "bac") for point in ALL_POINTS)
        rows = await read_device(DeviceConfig(spec, "bacnet", 1.0, points))
        assert {row["quality"] for row in rows} == {GOOD}, rows
        bacnet_device.set("chw_supply_temp", 8.25)
        await wait_until(lambda: notified(engine, "chw_supply_temp", 8.25), what="a COV notification to the engine")
    finally:
        await engine.close()


async def test_a_device_with_another_instance_is_refused_naming_both(bacnet_device):
    wrong = driver_for(bacnet_device, device_instance=4321)
    with pytest.raises(CommunicationError) as refused:
        await wrong.connect()
    assert str(refused.value) == (
        f"BACnet device at 127.0.0.1:{bacnet_device.port} is device instance {bacnet_device.instance}, "
        "not the configured device instance 4321"
    )
    assert not wrong.connected
    await wrong.close()
    right = driver_for(bacnet_device)
    await right.connect()
    try:
        assert (await right.read(ALL_POINTS))["chw_setpoint"].value == 7.0
    finally:
        await right.close()


async def test_reconnecting_to_another_device_at_the_address_is_refused(bacnet_device):
    driver = driver_for(bacnet_device)
    await driver.connect()
    swapped = None
    try:
        port = bacnet_device.port
        await bacnet_device.stop()
        with pytest.raises(CommunicationError, match="did not answer"):
            await driver.read(ALL_POINTS)
        # another controller now answers at the same address (an IP swap)
        swapped = SimulatedBacnetDevice(f"127.0.0.1:{port}", instance=4321, step_seconds=None)
        await swapped.start()
        with pytest.raises(CommunicationError, match="is device instance 4321, not the configured device instance"):
            await driver.connect()
        assert not driver.connected
    finally:
        await driver.close()
        if swapped is not None:
            await swapped.stop()


async def test_a_device_replaced_without_falling_silent_is_noticed_while_connected(bacnet_device):
    driver = driver_for(bacnet_device)
    driver.identity_check_interval = 0.0  # check before every read (the default is once a minute)
    await driver.connect()
    swapped = None
    try:
        assert (await driver.read(ALL_POINTS))["chw_setpoint"].value == 7.0
        port = bacnet_device.port
        await bacnet_device.stop()
        await wait_until(lambda: udp_port_free(port), what="the old device's socket to close")
        # an identical controller takes the address before any request of ours goes unanswered: its objects
        # answer every read, so only its instance tells it apart
        swapped = SimulatedBacnetDevice(f"127.0.0.1:{port}", instance=4321, step_seconds=None)
        await swapped.start()
        with pytest.raises(WrongDevice, match="is device instance 4321, not the configured device instance"):
            await driver.read(ALL_POINTS)
        assert not driver.connected
    finally:
        await driver.close()
        if swapped is not None:
            await swapped.stop()


async def test_the_engine_shows_comm_failure_with_an_event_naming_both_instances(bacnet_device):
    poller, image, events = started_poller(bacnet_device, 4321)
    try:
        await wait_until(lambda: events, what="an event")
        assert events[0][0] == "comm_lost"
        assert events[0][2] == (
            f"communication lost: BACnet device at 127.0.0.1:{bacnet_device.port} is device instance "
            f"{bacnet_device.instance}, not the configured device instance 4321"
        )
        assert image.points["chw_setpoint"].quality == COMM_FAILURE
        attempts = poller.connect_attempts
        await wait_until(lambda: poller.connect_attempts >= attempts + 2, what="reconnects")
        # every reconnect is checked again; still one transition, and no value of the wrong device shows
        assert image.points["chw_setpoint"].quality == COMM_FAILURE
        assert image.points["chw_setpoint"].value is None
        assert [event[0] for event in events] == ["comm_lost"]
    finally:
        await poller.stop()


async def test_a_device_silent_first_and_replaced_later_is_named_in_a_second_event(bacnet_device):
    poller, image, events = started_poller(bacnet_device, bacnet_device.instance)
    swapped = None
    try:
        await wait_until(lambda: image.points["chw_setpoint"].quality == GOOD, what="the right device read")
        port = bacnet_device.port
        await bacnet_device.stop()  # it falls silent: communication lost, "did not answer"
        await wait_until(lambda: any(event[0] == "comm_lost" for event in events), what="the loss")
        swapped = SimulatedBacnetDevice(f"127.0.0.1:{port}", instance=4321, step_seconds=None)
        await swapped.start()  # another controller takes the address (an IP swap)
        await wait_until(lambda: len(events) >= 2, what="a second event naming both instances")
        assert [event[0] for event in events] == ["comm_lost", "comm_lost"]
        assert "is device instance 4321, not the configured device instance" in events[1][2]
        attempts = poller.connect_attempts
        await wait_until(lambda: poller.connect_attempts >= attempts + 2, what="reconnects")
        assert len(events) == 2 and image.points["chw_setpoint"].quality == COMM_FAILURE
    finally:
        await poller.stop()
        if swapped is not None:
            await swapped.stop()


# TEST-NET-1: never an address of this host
NOT_HERE = "192.0.2.77"
NOT_HERE_REASON = f"Cannot assign requested address ({NOT_HERE} is not an address of this host)"


@pytest.mark.parametrize(
    ("local", "reason", "poll_reads"),
    [
        (f"{NOT_HERE}:0", f"binding UDP {NOT_HERE}:0: {NOT_HERE_REASON}", False),
        (f"{NOT_HERE}/24:47999", f"binding UDP {NOT_HERE}:47999: {NOT_HERE_REASON}", False),
        # poll --once uses an ephemeral port on the same interface: only the engine's fixed port is wrong
        ("127.0.0.1:99999", "UDP port 99999 is out of range (0..65535)", True),
        ("127.0.0.1:notaport", "'127.0.0.1:notaport' is not an IPv4 ADDR[/PREFIX]:PORT (unrecognized format)", False),
        ("nosuchhost.invalid:0", "'nosuchhost.invalid:0' is not an IPv4 ADDR[/PREFIX]:PORT (unable to resolve", False),
        ("12", "'12' is not an IPv4 ADDR[/PREFIX]:PORT (it is a LocalStation)", False),
    ],
)
async def test_a_local_address_that_cannot_be_bound_is_one_clear_line_at_once(
    bacnet_device, caplog, local, reason, poll_reads
):
    """The engine, ``poll --once`` and ``bacnet priority`` report it at once, with the reason and no traceback.

    bacpypes3 retries a failed bind for ever in the background: the driver used to give up after 5 s with an
    empty reason (``cannot open a BACnet endpoint on …: ``) and asyncio logged a traceback, or (port 99999)
    an OverflowError escaped.
    """
    loop = asyncio.get_running_loop()
    driver = driver_for(bacnet_device, local_address=local)
    started = loop.time()
    with pytest.raises(CommunicationError) as refused:
        await driver.connect()
    assert loop.time() - started < 3.0
    assert str(refused.value).startswith(f"cannot open a BACnet endpoint on {local}: {reason}"), refused.value
    assert "\n" not in str(refused.value)
    assert not driver.connected
    await driver.close()
    # what poll --once prints for each point of the device: the same line, not a traceback
    spec = DeviceSpec("bac", "127.0.0.1", bacnet_device.port, timeout=0.5, options={"local_address": local})
    points = tuple(PointConfig(point, Scaling(point.data_type), 0.0, "bac") for point in ALL_POINTS[:1])
    rows = await read_device(DeviceConfig(spec, "bacnet", 1.0, points))
    if poll_reads:
        assert [row["quality"] for row in rows] == [GOOD], rows
    else:
        assert [row["quality"] for row in rows] == [COMM_FAILURE], rows
        assert rows[0]["error"].startswith("cannot open a BACnet endpoint on "), rows
        assert "\n" not in rows[0]["error"]
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")], caplog.text
