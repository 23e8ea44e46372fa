"""``python manage.py bacnet``: BACnet commissioning: discover devices, import their objects, show priority arrays.

* ``bacnet discover`` broadcasts Who-Is from the main interface (UDP 47808)
  and lists every device that answers with its objects;
  ``--address HOST:PORT`` asks one device directly instead.
* ``--import NAME`` creates (or updates) device NAME from the one device
  found and imports its objects as points (``--dry-run`` only checks);
  ``--csv FILE`` writes the point list for editing and ``importpoints``.
* ``bacnet priority POINT`` reads a commandable point's priority array from
  its device, from an ephemeral local port (never the engine's fixed
  ``local_address``). In a pair it runs only on the active node; ``--force``
  overrides that with a warning.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from bms.engine.management.commands.poll import refuse_unless_active
from bms.points import bacnet_tools
from bms.points.importer import ImportFailed
from bms.points.models import Point
from drivers.base import DriverError


class Command(BaseCommand):
    help = "BACnet commissioning: 'discover' devices (and import one), 'priority' shows a point's priority array."

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        find = actions.add_parser("discover", help="Who-Is / I-Am, then list each device's objects")
        find.add_argument("--address", help="ask this device (HOST:PORT) directly instead of broadcasting")
        find.add_argument("--local", help="our endpoint ADDR/PREFIX:PORT (default: main interface, port 47808)")
        find.add_argument("--instance", type=int, help="only the device with this instance")
        find.add_argument("--wait", type=float, default=3.0, help="seconds to collect I-Am answers (default 3)")
        find.add_argument("--import", dest="import_as", metavar="DEVICE_NAME", help="import the one device found")
        find.add_argument("--dry-run", action="store_true", help="with --import: check, change nothing")
        find.add_argument("--csv", help="write the found device's point list to this file")
        show = actions.add_parser("priority", help="read a commandable point's priority array from its device")
        show.add_argument("point")
        show.add_argument("--format", choices=["table", "json"], default="table")
        show.add_argument("--force", action="store_true", help="read even though this node is not active")

    def handle(self, *args, action: str, **options) -> None:
        if action == "priority":
            refuse_unless_active(self, options["force"])
            self._priority(options["point"], options["format"])
        else:
            self._discover(**options)

    def _discover(
        self,
        address: str | None,
        local: str | None,
        instance: int | None,
        wait: float,
        import_as: str | None,
        dry_run: bool,
        csv: str | None,
        **options,
    ) -> None:
        try:
            found = bacnet_tools.discover(local, address, instance, wait)
        except DriverError as exc:
            raise CommandError(str(exc)) from exc
        if not found:
            where = address or "the broadcast"
            raise CommandError(f"no BACnet device answered Who-Is to {where} within {wait} s")
        for device, objects in found:
            # objects of types the driver cannot read are counted, not dropped silently
            skipped = getattr(objects, "skipped_text", lambda: "")()
            self.stdout.write(
                f"device {device.instance} at {device.address} (vendor {device.vendor_id}): {len(objects)} objects"
                + (f"; {skipped}" if skipped else "")
            )
            for obj in objects:
                writable = "commandable" if obj.commandable else ""
                self.stdout.write(f"  {obj.address:<24} {obj.name:<28} {obj.unit:<6} {writable}")
        if not (import_as or csv):
            return
        if len(found) != 1:
            raise CommandError(f"{len(found)} devices answered; choose one with --instance or --address")
        device, objects = found[0]
        if csv:
            Path(csv).write_text(bacnet_tools.point_list(import_as or f"bacnet-{device.instance}", objects))
            self.stdout.write(f"point list written to {csv}")
        if import_as:
            try:
                result = bacnet_tools.import_device(import_as, device, objects, dry_run=dry_run)
            except ImportFailed as exc:
                raise CommandError("nothing imported:\n" + "\n".join(exc.errors)) from exc
            except ValidationError as exc:  # the device row itself (e.g. a name with spaces)
                raise CommandError(f"nothing imported: device {import_as}: {'; '.join(exc.messages)}") from exc
            verb = "would import" if dry_run else "imported"
            self.stdout.write(
                self.style.SUCCESS(
                    f"{verb} device {import_as}: {len(result.created)} new, {len(result.updated)} updated point(s)"
                )
            )

    def _priority(self, name: str, format: str) -> None:
        point = Point.objects.select_related("device").filter(name=name).first()
        if point is None:
            raise CommandError(f"there is no point named {name!r}")
        try:
            state = bacnet_tools.read_priority_array(point)
        except DriverError as exc:
            raise CommandError(str(exc)) from exc
        if format == "json":
            self.stdout.write(json.dumps(state, indent=2))
            return
        self.stdout.write(f"{point.name} ({point.device.name} {point.address})")
        for priority, value in state["priority_array"].items():
            marker = "  <- in control" if int(priority) == state["active_priority"] else ""
            self.stdout.write(f"  {priority:>2}: {'-' if value is None else value}{marker}")
        self.stdout.write(f"  relinquish default: {state['relinquish_default']}")
