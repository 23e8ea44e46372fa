"""BACnet commissioning for the CLI, the web manager and the API: discovery, import, priority arrays.

A discovered device becomes a configured device and its point list.
The points go through the ordinary CSV importer, so a discovered device is
validated exactly like a hand-written point list, and is imported all or
nothing together with its device row.
"""

from __future__ import annotations

import asyncio
import csv
import io

from django.db import transaction

from bms.points.importer import ImportResult, import_points
from bms.points.models import Device, Point
from drivers import bacnet_discovery as discovery
from drivers import bacnet_stack as stack
from drivers.bacnet import BacnetDriver, commissioning_spec
from drivers.base import DeviceSpec, DriverError, PointSpec

COLUMNS = ["device", "name", "address", "data_type", "description", "unit", "writable", "min_value", "max_value"]


def local_for(target: str | None, local: str | None) -> str:
    """Our endpoint: as given; else any port for a directed Who-Is, the main interface on 47808 for a broadcast."""
    if local:
        return local
    return stack.DEFAULT_LOCAL_ADDRESS if target else discovery.default_interface()


async def discover_and_describe(
    local: str, target: str | None, instance: int | None, wait: float, describe: bool
) -> list[tuple[discovery.FoundDevice, list[discovery.FoundObject]]]:
    """Who-Is, then (with ``describe``) each device's objects, over one BACnet endpoint."""
    app = await discovery.open_endpoint(local)
    try:
        devices = await discovery.who_is_with(app, target, instance, wait)
        results = []
        for device in devices:
            objects = await discovery.read_objects(app, device) if describe else []
            results.append((device, objects))
        return results
    finally:
        stack.close_application(app)


def discover(
    local: str | None = None, target: str | None = None, instance: int | None = None, wait: float = 3.0, describe=True
) -> list[tuple[discovery.FoundDevice, list[discovery.FoundObject]]]:
    """Blocking wrapper for Django code (management command, views): runs its own event loop."""
    return asyncio.run(discover_and_describe(local_for(target, local), target, instance, wait, describe))


def point_list(device_name: str, objects: list[discovery.FoundObject]) -> str:
    """The CSV point list (importer columns) of a discovered device's objects."""
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    taken: set[str] = set()
    for found in objects:
        writer.writerow(
            {
                "device": device_name,
                "name": discovery.point_name(device_name, found, taken),
                "address": found.address,
                "data_type": found.data_type,
                "description": found.description[:255],
                "unit": found.unit[:32],
                "writable": "yes" if found.commandable else "no",
                # a multi-state value runs 1..numberOfStates: the server refuses a write outside (out_of_range)
                # instead of sending it for the device to refuse
                "min_value": 1 if found.states else "",
                "max_value": found.states or "",
            }
        )
    return out.getvalue()


def import_device(
    device_name: str, found: discovery.FoundDevice, objects: list[discovery.FoundObject], dry_run: bool = False
) -> ImportResult:
    """Create or update the device and import its points; nothing changes if any point is refused."""
    with transaction.atomic():
        device = Device.objects.filter(name=device_name).first() or Device(name=device_name)
        device.driver = "bacnet"
        device.host = found.host
        device.port = found.port
        device.options = {**(device.options or {}), "device_instance": found.instance}
        device.full_clean()
        device.save()
        result = import_points(point_list(device_name, objects), dry_run=dry_run)
        if dry_run:
            transaction.set_rollback(True)
    return result


def read_priority_array(point: Point) -> dict:
    """The point's priority array from its device, as JSON-ready data (used by the API too).

    It opens its own endpoint on an ephemeral port (see
    :func:`drivers.bacnet.commissioning_spec`), so it never shares the
    engine's fixed local address, not even in the embedded shape.
    """
    device = point.device
    if device.driver != "bacnet":
        raise DriverError(f"{point.name} is a {device.driver} point; only BACnet points have a priority array")
    spec = DeviceSpec(device.name, device.host, device.port, device.unit_id, device.timeout, device.options or {})
    # An ephemeral port of our own, never the device's fixed local_address: that is the engine's endpoint.
    driver = BacnetDriver(commissioning_spec(spec))

    async def read() -> dict:
        try:
            await driver.connect()
            state = await driver.read_priority_array(PointSpec(point.name, point.address, point.data_type))
        finally:
            await driver.close()
        return {"point": point.name, "device": device.name, "address": point.address, **state.as_dict()}

    return asyncio.run(read())
