"""``python manage.py loaddemo [--bacnet-port B]``: the demo building's devices, points and the demo operator."""

from pathlib import Path

from django.contrib.auth.models import Group, Permission, User
from django.core.management.base import BaseCommand, CommandError

from bms.points.importer import ImportFailed, import_points
from bms.points.models import Device

DEMO_CSV = Path(__file__).resolve().parents[2] / "demo" / "demo_building.csv"
DEMO_BACNET_CSV = DEMO_CSV.with_name("demo_bacnet.csv")
BACNET_DEVICE_INSTANCE = 1001  # the simulator's default --bacnet-instance


def ensure_operators_group() -> Group:
    group, _ = Group.objects.get_or_create(name="Operators")
    group.permissions.add(Permission.objects.get(codename="write_point", content_type__app_label="points"))
    return group


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

    def handle(
        self,
        *args,
        modbus_host: str,
        modbus_port: int,
        poll_interval: float,
        demo_user: bool,
        bacnet_host: str = "127.0.0.1",
        bacnet_port: int | None = None,
        **options,
    ) -> None:
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
