"""``python manage.py poll --once``: read every configured point once and report it, for commissioning.

It talks to the devices directly, without the engine, so an integrator can
check a point list before going live. It exits with status 1 when any point
is not good, so scripts can use it as a check.

In a pair it runs only on the active node: a standby (or a node that does
not know its role) does no field I/O, so the command refuses unless an
engineer passes ``--force`` (then it warns and reads anyway). A node alone is
always active. BACnet devices are read from an ephemeral local port, never the
engine's fixed ``local_address``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from bms.engine import store
from bms.engine.config import DeviceConfig
from bms.engine.image import BAD, COMM_FAILURE, GOOD
from drivers.base import DriverError
from drivers.registry import driver_class
from redundancy.nodeview import node_view


async def read_device(device: DeviceConfig) -> list[dict[str, Any]]:
    """One row per point of ``device``: name, value, unit-free engineering value, quality, error."""
    spec = device.spec
    if device.driver == "bacnet":
        from drivers.bacnet import commissioning_spec  # only BACnet has an endpoint the engine could be holding

        spec = commissioning_spec(spec)
    driver = driver_class(device.driver)(spec)

    def row(point, value, quality: str, error: str | None) -> dict[str, Any]:
        return {"device": device.name, "point": point.name, "value": value, "quality": quality, "error": error}

    try:
        await driver.connect()
        readings = await driver.read([point.spec for point in device.points])
    except DriverError as exc:
        return [row(point, None, COMM_FAILURE, str(exc)) for point in device.points]
    finally:
        await driver.close()
    rows = []
    for point in device.points:
        reading = readings[point.name]
        if reading.ok:
            quality = reading.quality or GOOD  # the device's own verdict (BACnet status flags)
            rows.append(row(point, point.scaling.to_engineering(reading.value), quality, None))
        else:
            rows.append(row(point, None, BAD, reading.error))
    return rows


def refuse_unless_active(command: BaseCommand, force: bool) -> None:
    """Only the active node talks to devices: refuse elsewhere, or warn when an engineer forces it."""
    view = node_view()
    if view.is_active:
        return
    state = "does not know its role" if not view.role_known else f"is {view.role.replace('_', ' ')}"
    message = f"This node ({view.node}) {state}: only the active node talks to devices"
    if view.active_node and view.active_node != view.node:
        message += f"; run it on the active node {view.active_node}"
    if not force:
        raise CommandError(f"{message}. An engineer may override this with --force.")
    command.stderr.write(command.style.WARNING(f"WARNING: {message}. --force given: talking to the devices anyway."))


class Command(BaseCommand):
    help = "Read every configured point once from its device and print value, quality and error."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="read once and exit (the only mode)")
        parser.add_argument("--format", choices=["table", "json"], default="table")
        parser.add_argument("--device", help="only this device")
        parser.add_argument("--force", action="store_true", help="read even though this node is not active")

    def handle(self, *args, format: str, device: str | None, force: bool = False, **options) -> None:
        refuse_unless_active(self, force)
        devices = [d for d in store.read_config().devices if d.points]
        if device is not None:
            known = sorted(d.name for d in devices)
            devices = [d for d in devices if d.name == device]
            if not devices:
                raise CommandError(f"no enabled device {device!r} with points; known: {', '.join(known) or 'none'}")
        rows = asyncio.run(self._read_all(devices))
        if format == "json":
            self.stdout.write(json.dumps(rows, indent=2))
        else:
            self._table(rows)
        failing = [r for r in rows if r["quality"] != GOOD]
        if failing:
            raise CommandError(f"{len(failing)} of {len(rows)} point(s) are not good")

    @staticmethod
    async def _read_all(devices: list[DeviceConfig]) -> list[dict[str, Any]]:
        per_device = await asyncio.gather(*(read_device(d) for d in devices))
        return [row for rows in per_device for row in rows]

    def _table(self, rows: list[dict[str, Any]]) -> None:
        width = max((len(r["point"]) for r in rows), default=5)
        self.stdout.write(f"{'device':<12} {'point':<{width}} {'value':>14}  {'quality':<12} error")
        for r in rows:
            value = "" if r["value"] is None else str(r["value"])
            style = self.style.SUCCESS if r["quality"] == GOOD else self.style.ERROR
            line = f"{r['device']:<12} {r['point']:<{width}} {value:>14}  {r['quality']:<12} {r['error'] or ''}"
            self.stdout.write(style(line))
