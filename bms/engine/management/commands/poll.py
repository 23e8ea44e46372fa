"""``python manage.py poll --once``: read every configured point once and report it, for commissioning.

It talks to the devices directly, without the engine, so an integrator can
check a point list before going live. It exits with status 1 when any point
is not good, so scripts can use it as a check. (On a standby node of a pair
it must not be run: the standby does no field I/O.)
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


async def read_device(device: DeviceConfig) -> list[dict[str, Any]]:
    """One row per point of ``device``: name, value, unit-free engineering value, quality, error."""
    driver = driver_class(device.driver)(device.spec)

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


class Command(BaseCommand):
    help = "Read every configured point once from its device and print value, quality and error."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="read once and exit (the only mode)")
        parser.add_argument("--format", choices=["table", "json"], default="table")
        parser.add_argument("--device", help="only this device")

    def handle(self, *args, format: str, device: str | None, **options) -> None:
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
