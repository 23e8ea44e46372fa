"""Discovery errors are one clear line (command line) or a message with 400/502 (web page), never a traceback.

Also: objects of types the driver cannot read are counted per type, not dropped silently. Everything runs
against real bacpypes3 devices on loopback (the simulator process, or an in-process device with extra objects).
"""

import asyncio
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from bacpypes3.local.object import Object
from bacpypes3.object import CharacterStringValueObject, IntegerValueObject
from django.contrib.auth.models import Permission, User

from drivers import bacnet_discovery as discovery
from drivers import bacnet_stack as stack
from drivers.base import CommunicationError
from drivers.simulator.bacnet_device import OBJECTS, SimulatedBacnetDevice

ROOT = Path(__file__).resolve().parents[2]
# TEST-NET-1: never an address of this host (the broadcast test uses it only inside its own namespaces)
NOT_HERE = "192.0.2.77"


class IntegerValue(Object, IntegerValueObject):
    """A served integer-value object: a type the driver does not read."""


class CharacterStringValue(Object, CharacterStringValueObject):
    """A served characterstring-value object: a type the driver does not read."""


@pytest.fixture
def held_udp_port():
    """A UDP port on 127.0.0.1 held by a plain socket (no SO_REUSEPORT), so nobody else can bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def discover_command(*args: str) -> subprocess.CompletedProcess:
    """``manage.py bacnet discover ...`` as an operator runs it: exit status, stdout, stderr."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bms.settings.test"}
    return subprocess.run(
        [sys.executable, "manage.py", "bacnet", "discover", *args, "--wait", "0.5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode != 0, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected in lines[0], lines[0]


#: (arguments, the one line expected): each a separate ``manage.py bacnet discover`` run
ONE_LINE_CASES = [
    (
        ["--address", "nosuchhost.invalid:47808"],
        "device address 'nosuchhost.invalid:47808': cannot resolve host 'nosuchhost.invalid'",
    ),
    (["--address", "127.0.0.1:notaport"], "device address '127.0.0.1:notaport': port 'notaport' is not a number"),
    (["--address", "127.0.0.1:99999"], "port 99999 is out of range (0..65535)"),
    (["--address", "127.0.0.1:47808", "--local", "127.0.0.1:x"], "local address '127.0.0.1:x': port 'x' is not"),
    (["--address", "127.0.0.1:47808", "--instance", "4194304"], "device instance 4194304 is out of range"),
    (
        ["--address", "127.0.0.1:47808", "--local", f"{NOT_HERE}/24:47808"],
        f"cannot open a BACnet endpoint on {NOT_HERE}/24:47808: binding UDP {NOT_HERE}:47808: "
        f"Cannot assign requested address ({NOT_HERE} is not an address of this host)",
    ),
]


@pytest.fixture(scope="module")
def one_line_answers() -> dict[tuple[str, ...], subprocess.CompletedProcess]:
    """Every case's command run once, all at the same time: each is a process that spends its time starting
    Django, and none of them binds anything another one needs (they fail before, or on an address not here)."""
    with ThreadPoolExecutor(len(ONE_LINE_CASES)) as pool:
        results = pool.map(lambda case: discover_command(*case[0]), ONE_LINE_CASES)
        return {tuple(args): result for (args, _), result in zip(ONE_LINE_CASES, results, strict=True)}


@pytest.mark.parametrize(("args", "expected"), ONE_LINE_CASES)
def test_the_command_line_says_what_is_wrong_in_one_line(one_line_answers, args, expected):
    assert_one_line(one_line_answers[tuple(args)], expected)


def test_a_local_port_in_use_gives_the_systems_reason(held_udp_port):
    result = discover_command("--address", "127.0.0.1:47808", "--local", f"127.0.0.1:{held_udp_port}")
    assert_one_line(
        result,
        f"cannot open a BACnet endpoint on 127.0.0.1:{held_udp_port}: "
        f"binding UDP 127.0.0.1:{held_udp_port}: Address already in use",
    )


async def test_a_failed_bind_is_reported_at_once(held_udp_port):
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(CommunicationError, match="Address already in use"):
        await discovery.open_endpoint(f"127.0.0.1:{held_udp_port}")
    # bacpypes3 alone retries the bind for ever; the endpoint used to give up after 5 s with no reason
    assert loop.time() - started < 4.0


def engineer(client) -> User:
    user = User.objects.create_user("eng", password="pw", is_staff=True)
    perms = ("add_point", "add_device", "change_point", "change_device")
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    client.force_login(user)
    return user


@pytest.mark.parametrize(
    ("form", "status", "expected"),
    [
        ({"address": "nosuchhost.invalid"}, 400, "cannot resolve host &#x27;nosuchhost.invalid&#x27;"),
        ({"address": "127.0.0.1:notaport"}, 400, "port &#x27;notaport&#x27; is not a number"),
        ({"address": "127.0.0.1:47808", "local": "10.0.0.1/99:47808"}, 400, "prefix /99 is not 0..32"),
        (
            {"address": "127.0.0.1:47808", "local": f"{NOT_HERE}/24:47808"},
            502,
            f"binding UDP {NOT_HERE}:47808: Cannot assign requested address",
        ),
    ],
)
def test_the_page_shows_the_reason_with_400_or_502(client, db, form, status, expected):
    engineer(client)
    page = client.post("/bacnet/discover/", {"action": "discover", "wait": "0.5", **form})
    assert page.status_code == status
    text = page.content.decode()
    assert "Discovery failed: " in text and expected in text, text
    assert 'name="address"' in text  # the form is there to correct the input


def test_an_import_from_an_unresolvable_address_is_refused_cleanly(client, db):
    engineer(client)
    page = client.post(
        "/bacnet/discover/",
        {"action": "import", "target": "nosuchhost.invalid:47808", "instance": "1001", "device_name": "x"},
    )
    assert page.status_code == 400
    assert "Nothing imported: device address" in page.content.decode()


def test_skipped_objects_are_counted_on_the_command_line_and_the_page(client, db, simulator):
    target = f"127.0.0.1:{simulator.bacnet_port}"
    result = discover_command("--address", target)
    assert result.returncode == 0, result.stderr
    # the device object is the device itself; its network-port object is the one the driver cannot read
    summary = (
        f"device 1001 at {target} (vendor 999): {len(OBJECTS)} objects; 1 skipped (unsupported types: 1 network-port)"
    )
    assert summary in result.stdout
    engineer(client)
    page = client.post("/bacnet/discover/", {"action": "discover", "address": target, "wait": "1"})
    assert page.status_code == 200
    assert "1 skipped (unsupported types: 1 network-port)" in page.content.decode()


async def test_read_objects_counts_every_unsupported_type():
    device = SimulatedBacnetDevice("127.0.0.1:0", step_seconds=None)
    await device.start()
    app = None
    try:
        for instance in range(1, 4):
            device.app.add_object(
                IntegerValue(objectIdentifier=("integer-value", instance), objectName=f"int{instance}", presentValue=0)
            )
        for instance in range(1, 3):
            device.app.add_object(
                CharacterStringValue(
                    objectIdentifier=("characterstring-value", instance), objectName=f"text{instance}", presentValue=""
                )
            )
        app = await discovery.open_endpoint("127.0.0.1:0")
        (found,) = await discovery.who_is_with(app, device.address, device.instance, 2.0)
        objects = await discovery.read_objects(app, found)
    finally:
        stack.close_application(app)
        await device.stop()
    assert {obj.address for obj in objects} == {sim.address for sim in OBJECTS}
    assert objects.skipped == {"integer-value": 3, "characterstring-value": 2, "network-port": 1}
    assert objects.skipped_text() == (
        "6 skipped (unsupported types: 3 integer-value, 2 characterstring-value, 1 network-port)"
    )
