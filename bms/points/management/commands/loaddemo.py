"""``python manage.py loaddemo [--bacnet-port B] [--no-alarms]``: the demo building's devices, points, alarms
and the demo operator.

The demo alarms (``bms/points/demo/demo_alarms.csv``, and ``demo_bacnet_alarms.csv`` with the BACnet device)
have limits set tight on purpose, just outside where the simulated plant's values wander by themselves, so a
few of them go off and return now and then without anyone touching the building: the zone and meter alarms
every few minutes (noise), the outside-air alarms about once an hour and the chiller-load alarms about every
half hour (the simulator's slow sine waves).
"""

import importlib
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.core.management.base import BaseCommand, CommandError

from bms.alarms.importer import import_alarms
from bms.points.importer import ImportFailed, import_points
from bms.points.models import Device

DEMO_CSV = Path(__file__).resolve().parents[2] / "demo" / "demo_building.csv"
DEMO_BACNET_CSV = DEMO_CSV.with_name("demo_bacnet.csv")
DEMO_ALARMS_CSV = DEMO_CSV.with_name("demo_alarms.csv")
DEMO_BACNET_ALARMS_CSV = DEMO_CSV.with_name("demo_bacnet_alarms.csv")
BACNET_DEVICE_INSTANCE = 1001  # the simulator's default --bacnet-instance
#: what the Operators group may do: write values, acknowledge and shelve alarms
OPERATOR_PERMISSIONS = (("points", "write_point"), ("alarms", "acknowledge_alarm"), ("alarms", "shelve_alarm"))


def ensure_operators_group() -> Group:
    group, _ = Group.objects.get_or_create(name="Operators")
    for app_label, codename in OPERATOR_PERMISSIONS:
        group.permissions.add(Permission.objects.get(codename=codename, content_type__app_label=app_label))
    return group


def ensure_alarm_classes() -> None:
    """The default alarm classes (critical, high, ...), in case a test database was flushed since migrating."""
    importlib.import_module("bms.alarms.migrations.0002_default_alarm_classes").create_classes(apps, None)


class Command(BaseCommand):
    help = (
        "Load the simulated building (device 'plant' and its points; with --bacnet-port also 'plant-bacnet') "
        "and, with --demo-user, the demo operator."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--modbus-host", default="127.0.0.1")
        parser.add_argument("--modbus-port", type=int, default=15020)
        parser.add_argument("--poll-interval", type=float, default=1.0)
        parser.add_argument("--bacnet-host", default="127.0.0.1")
        parser.add_argument(
            "--bacnet-port", type=int, help="also load the BACnet device 'plant-bacnet' at this UDP port (with COV)"
        )
        parser.add_argument("--demo-user", action="store_true", help="create the operator demo/demo (demo mode only)")
        parser.add_argument(
            "--no-alarms", action="store_true", help="load no demo alarm definitions (tests that want a quiet building)"
        )

    def handle(
        self,
        *args,
        modbus_host: str,
        modbus_port: int,
        poll_interval: float,
        demo_user: bool,
        bacnet_host: str = "127.0.0.1",
        bacnet_port: int | None = None,
        no_alarms: bool = False,
        **options,
    ) -> None:
        if demo_user and not settings.BMS_DEMO_ACCOUNTS:
            # Checked before anything is loaded: a well-known password with write permission must never reach a
            # real building (issue 13). Production makes its operator with `manage.py createoperator`.
            raise CommandError(
                "--demo-user is refused under these settings: demo/demo would be a known password with write "
                "permission. Create a real operator with `python manage.py createoperator` (docs/security.md)."
            )
        device, _ = Device.objects.update_or_create(
            name="plant",
            defaults={
                "driver": "modbus",
                "host": modbus_host,
                "port": modbus_port,
                "unit_id": 1,
                "poll_interval": poll_interval,
                "enabled": True,
            },
        )
        try:
            result = import_points(DEMO_CSV.read_text(encoding="utf-8"))
        except ImportFailed as exc:
            raise CommandError("the shipped demo point list is invalid:\n" + "\n".join(exc.errors)) from exc
        operators = ensure_operators_group()
        count = len(result.created) + len(result.updated)
        self.stdout.write(f"demo building: device {device.name} at {modbus_host}:{modbus_port}, {count} points")
        if bacnet_port is not None:
            self._load_bacnet(bacnet_host, bacnet_port, poll_interval)
        if not no_alarms:
            self._load_alarms(DEMO_ALARMS_CSV)
            if bacnet_port is not None:
                self._load_alarms(DEMO_BACNET_ALARMS_CSV)
        if demo_user:
            user, created = User.objects.get_or_create(username="demo")
            if created:
                user.set_password("demo")
                user.save()
            user.groups.add(operators)
            self.stdout.write("demo operator: demo / demo")

    def _load_bacnet(self, host: str, port: int, poll_interval: float) -> None:
        device, _ = Device.objects.update_or_create(
            name="plant-bacnet",
            defaults={
                "driver": "bacnet",
                "host": host,
                "port": port,
                "poll_interval": poll_interval,
                "options": {"device_instance": BACNET_DEVICE_INSTANCE, "cov": True, "cov_lifetime": 300},
                "enabled": True,
            },
        )
        try:
            result = import_points(DEMO_BACNET_CSV.read_text(encoding="utf-8"))
        except ImportFailed as exc:
            raise CommandError("the shipped BACnet demo point list is invalid:\n" + "\n".join(exc.errors)) from exc
        count = len(result.created) + len(result.updated)
        self.stdout.write(f"demo building: BACnet device {device.name} at {host}:{port}, {count} points")

    def _load_alarms(self, path: Path) -> None:
        ensure_alarm_classes()
        try:
            result = import_alarms(path.read_text(encoding="utf-8"))
        except ImportFailed as exc:
            raise CommandError(f"the shipped demo alarms {path.name} are invalid:\n" + "\n".join(exc.errors)) from exc
        count = len(result.created) + len(result.updated)
        self.stdout.write(f"demo building: {count} alarm definitions ({path.name})")
