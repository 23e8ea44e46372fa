"""The web manager's BACnet discovery page and the priority-array API, against the simulator process."""

import asyncio
import socket

from django.contrib.auth.models import Permission, User

from bms.points.models import Device, Point
from drivers.bacnet import BacnetDriver
from drivers.base import DeviceSpec, PointSpec
from drivers.simulator.bacnet_device import OBJECTS


def engineer(client, *perms: str) -> User:
    user = User.objects.create_user("eng", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    client.force_login(user)
    return user


def test_only_staff_see_the_discovery_page(client, db):
    assert client.get("/bacnet/discover/").status_code == 302
    client.force_login(User.objects.create_user("operator", password="pw"))
    assert client.get("/bacnet/discover/").status_code == 302  # to the login page
    assert b'href="/bacnet/discover/"' not in client.get("/points/").content  # and no link to it
    client.force_login(User.objects.create_user("eng", password="pw", is_staff=True))
    assert b'href="/bacnet/discover/"' in client.get("/points/").content  # engineers find it in the menu
    page = client.get("/bacnet/discover/")
    assert page.status_code == 200 and b"Discover" in page.content


def test_discover_and_import_from_the_page(client, db, simulator):
    engineer(client, "add_point", "add_device", "change_point", "change_device")
    target = f"127.0.0.1:{simulator.bacnet_port}"
    page = client.post("/bacnet/discover/", {"action": "discover", "address": target, "wait": "1"})
    text = page.content.decode()
    assert f"Device 1001 at {target}" in text
    assert all(sim.address in text for sim in OBJECTS)
    assert "Import 11 points" in text
    done = client.post(
        "/bacnet/discover/",
        {"action": "import", "target": target, "instance": "1001", "device_name": "chiller", "wait": "1"},
        follow=True,
    )
    assert "Device chiller: 11 point(s) created, 0 updated." in done.content.decode()
    assert Point.objects.filter(device__name="chiller").count() == len(OBJECTS)


def test_import_needs_the_add_permissions(client, db, simulator):
    engineer(client)
    target = f"127.0.0.1:{simulator.bacnet_port}"
    page = client.post("/bacnet/discover/", {"action": "discover", "address": target, "wait": "1"})
    assert "Import 11 points" not in page.content.decode()
    refused = client.post(
        "/bacnet/discover/",
        {"action": "import", "target": target, "instance": "1001", "device_name": "chiller"},
        follow=True,
    )
    assert "You may not add devices and points." in refused.content.decode()
    assert not Device.objects.exists()


def test_priority_array_api(client, db, simulator):
    device = Device.objects.create(name="chiller", driver="bacnet", host="127.0.0.1", port=simulator.bacnet_port)
    Point.objects.create(device=device, name="valve", address="analog-output:1", data_type="float32")
    Point.objects.create(device=device, name="supply", address="analog-input:1", data_type="float32")
    modbus = Device.objects.create(name="plant", host="127.0.0.1", port=simulator.modbus_port)
    Point.objects.create(device=modbus, name="register", address="hr:0", data_type="uint16")
    assert client.get("/api/points/valve/priority-array").status_code == 401
    client.force_login(User.objects.create_user("operator", password="pw"))

    async def write(value, priority):
        driver = BacnetDriver(DeviceSpec("chiller", "127.0.0.1", simulator.bacnet_port))
        await driver.connect()
        try:
            await driver.write(PointSpec("valve", "analog-output:1", "float32"), value, priority)
        finally:
            await driver.close()

    asyncio.run(write(40.0, 5))
    try:
        answer = client.get("/api/points/valve/priority-array")
        assert answer.status_code == 200
        body = answer.json()
        assert body["priority_array"]["5"] == 40.0
        assert [body["priority_array"][str(p)] for p in range(6, 17)] == [None] * 11
        assert (body["active_priority"], body["relinquish_default"]) == (5, 0.0)
    finally:
        asyncio.run(write(None, 5))
    assert client.get("/api/points/supply/priority-array").status_code == 409  # an input has none
    assert client.get("/api/points/register/priority-array").json()["error"] == "not_bacnet"
    assert client.get("/api/points/nope/priority-array").status_code == 404
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        Device.objects.filter(pk=device.pk).update(port=silent.getsockname()[1], timeout=0.2, options={"retries": 0})
        gone = client.get("/api/points/valve/priority-array")
    assert gone.status_code == 502 and "did not answer" in gone.json()["message"]
