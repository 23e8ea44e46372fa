"""The real engine against a real bacpypes3 device on loopback: endpoints, identity and recovery in the event log.

The engine polls a device with COV on a fixed ``local_address`` (as a site
that must answer from 47808 does). While it runs, ``poll --once`` (another
process) and the priority-array API (this process, as in the embedded shape)
read the device; the device's own subscription table shows that the engine's
subscriptions were neither cancelled nor duplicated, and a change still
reaches the engine by COV. A device configured with the wrong instance is
``comm_failure`` naming both instances, and fixing the configuration logs
``comm_restored``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.contrib.auth.models import User
from django.db import connection, connections, transaction
from django.test import Client

from bms.engine.image import COMM_FAILURE, GOOD
from bms.engine.runner import Engine
from bms.events.models import Event
from bms.points.models import Device, Point
from drivers.simulator.bacnet_device import OBJECTS, SimulatedBacnetDevice
from tests.drivers.test_bacnet_endpoint import free_udp_port
from tests.support.bacnet import ALL_POINTS, point_of
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
# generous: the machine is shared, and each step waits for a config check, a poller (re)start and the event outbox
WAIT = 20.0
#: the objects the engine subscribes to: every simulated object has a present-value point
SUBSCRIBED = len({point.address for point in ALL_POINTS})


def subscriptions(device: SimulatedBacnetDevice) -> set[tuple[str, int, str]]:
    """Every COV subscription the device holds, as (subscriber address, process id, object), read at the device."""
    assert device.app is not None
    return {
        (str(cov.client_addr), int(cov.proc_id), str(cov.obj_id))
        for detection in device.app._cov_detections.values()
        for cov in detection.cov_subscriptions
    }


def events(source: str) -> list[tuple[str, str]]:
    return list(
        Event.objects.filter(source=source, kind__startswith="comm_").order_by("id").values_list("kind", "message")
    )


@transaction.atomic  # one configuration revision: the engine loads the device once, with all its points
def configure(device: SimulatedBacnetDevice, timeout: float = 0.5, **options) -> Device:
    row = Device.objects.create(
        name="bac",
        driver="bacnet",
        host="127.0.0.1",
        port=device.port,
        poll_interval=0.2,
        timeout=timeout,
        options={"device_instance": device.instance, "retries": 0, **options},
    )
    for sim in OBJECTS:
        point = point_of(sim)
        Point.objects.create(
            device=row,
            name=f"bac.{point.name}",
            address=point.address,
            data_type=point.data_type,
            writable=sim.commandable,
            trend_mode="off",
        )
    return row


@pytest.fixture
async def engine(transactional_db, bacnet_device):
    """The engine, stopped before the device (its close cancels the subscriptions the test counts)."""
    node = Engine(
        InMemoryChannelLayer(capacity=10000),
        publish_min_interval=0.0,
        config_check_interval=0.05,
        command_scan_interval=0.05,
    )
    await node.start()
    try:
        yield node
    finally:
        await node.stop()
        # the shared sync_to_async thread keeps its connection; close it so the test database can be dropped
        await sync_to_async(connections.close_all)()


def all_quality(engine: Engine, quality: str) -> bool:
    states = [engine.image.points.get(f"bac.{point.name}") for point in ALL_POINTS]
    return all(state is not None and state.quality == quality for state in states)


def test_database_url() -> str:
    """BMS_TEST_DATABASE_URL naming the test database pytest-django created, for another process."""
    parts = urlsplit(os.environ.get("BMS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bms"))
    return urlunsplit(parts._replace(path=f"/{connection.settings_dict['NAME']}"))


test_database_url.__test__ = False  # a helper, not a test


async def poll_once_in_another_process() -> tuple[int, str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bms.settings.test",
        "BMS_TEST_DATABASE_URL": await sync_to_async(test_database_url)(),
        "PYTHONPATH": str(ROOT),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "manage.py",
        "poll",
        "--once",
        "--format",
        "json",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    return process.returncode, out.decode(), err.decode()


def api_get(url: str) -> tuple[int, dict]:
    """GET ``url`` as a logged-in engineer, on this thread (the web side's), closing its database connection."""
    try:
        client = Client()
        client.force_login(User.objects.get_or_create(username="eng", defaults={"is_staff": True})[0])
        answer = client.get(url)
        return answer.status_code, answer.json()
    finally:
        connections.close_all()


async def test_the_engines_subscriptions_survive_poll_once_and_the_priority_array_api(engine, bacnet_device):
    local = f"127.0.0.1:{free_udp_port()}"
    # a generous timeout and a retry: a loaded machine must not make the engine re-subscribe mid-test
    await sync_to_async(configure)(bacnet_device, timeout=2.0, local_address=local, cov=True, retries=1)
    await eventually(lambda: all_quality(engine, GOOD), WAIT, "every point good")
    engine_subscriptions = await eventually(
        lambda: len(subs := subscriptions(bacnet_device)) == SUBSCRIBED and subs, WAIT, "the engine's subscriptions"
    )
    assert {subscriber for subscriber, _, _ in engine_subscriptions} == {local}
    subscribe_requests = bacnet_device.requests["SubscribeCOVRequest"]
    reads = bacnet_device.requests["ReadPropertyMultipleRequest"] + bacnet_device.requests["ReadPropertyRequest"]

    # poll --once in another process, while the engine runs
    status, out, err = await poll_once_in_another_process()
    assert status == 0, err
    assert {row["quality"] for row in json.loads(out)} == {GOOD}, out
    # the priority-array API in this process (web and engine share one process in the embedded shape)
    for url in ("/api/points/bac.chw_setpoint/priority-array", "/api/v1/points/bac.chw_setpoint/priority-array"):
        status, answer = await asyncio.to_thread(api_get, url)
        assert status == 200, answer
        assert answer["relinquish_default"] == 7.0, answer

    # Counted at the device: the tools did talk to it, yet it holds exactly the engine's subscriptions (same
    # subscriber, same process ids), and nobody subscribed or cancelled anything meanwhile.
    after = bacnet_device.requests["ReadPropertyMultipleRequest"] + bacnet_device.requests["ReadPropertyRequest"]
    assert after > reads
    assert subscriptions(bacnet_device) == engine_subscriptions
    assert bacnet_device.requests["SubscribeCOVRequest"] == subscribe_requests
    # and a change still reaches the engine by COV
    bacnet_device.set("chw_supply_temp", 9.75)
    await eventually(lambda: engine.image.points["bac.chw_supply_temp"].value == 9.75, WAIT, "the COV notification")
    assert await sync_to_async(events)("bac") == []


async def test_a_wrong_instance_fixed_by_reconfiguration_logs_comm_restored(engine, bacnet_device):
    device = await sync_to_async(configure)(bacnet_device)
    device.options = {**device.options, "device_instance": 4321}
    await sync_to_async(device.save)()
    await eventually(lambda: all_quality(engine, COMM_FAILURE), WAIT, "comm_failure")
    lost = (
        f"communication lost: BACnet device at 127.0.0.1:{bacnet_device.port} is device instance "
        f"{bacnet_device.instance}, not the configured device instance 4321"
    )
    await eventually(lambda: events("bac") == [("comm_lost", lost)], WAIT, "comm_lost naming both", db=True)
    broken = engine.pollers["bac"]
    attempts = broken.connect_attempts
    await eventually(lambda: broken.connect_attempts >= attempts + 2, WAIT, "refused reconnects")
    assert all_quality(engine, COMM_FAILURE)

    device.options = {**device.options, "device_instance": bacnet_device.instance}  # the engineer fixes it
    await sync_to_async(device.save)()
    await eventually(lambda: engine.pollers.get("bac") not in (None, broken), WAIT, "poller restarted")
    await eventually(lambda: all_quality(engine, GOOD), WAIT, "every point good")
    await eventually(
        lambda: [kind for kind, _ in events("bac")] == ["comm_lost", "comm_restored"], WAIT, "comm_restored", db=True
    )
