"""``python manage.py loaddemo [--bacnet-port B] [--no-alarms] [--functions]``: the demo building's devices,
points, alarms, schedule and logic, and the demo operator.

The demo alarms (``bms/points/demo/demo_alarms.csv``, and ``demo_bacnet_alarms.csv`` with the BACnet device)
have limits set tight on purpose, just outside where the simulated plant's values wander by themselves, so a
few of them go off and return now and then without anyone touching the building: the zone and meter alarms
every few minutes (noise), the outside-air alarms about once an hour and the chiller-load alarms about every
half hour (the simulator's slow sine waves).

With ``--functions`` (``make demo`` passes it) the building also runs itself (issue 12):

* the calendar ``public-holidays`` (German public holidays from the ``holidays`` package);
* the schedule ``occupancy`` (Europe/Berlin): zone 1 and zone 2 setpoints (AHU 1's zones) 21 degC on
  weekdays 07:00-19:00, 17 degC otherwise, at weekends and on public holidays, in slot 12 of their
  priority arrays (an operator's manual override at 8 wins over it);
* the rule ``zone1_handover``: zone 1's unit under BMS control (coil ``zone1_remote``) while the BMS has a good
  zone 1 temperature, otherwise back on its own thermostat;
* the rule ``zone1_loop``: a PID holding zone 1 at ``zone1_setpoint`` by moving the unit's reheat valve
  ``zone1_valve`` (0-100 %, clamp anti-windup), so the zone visibly follows the schedule's setpoint.

Zones 3 and 4 keep their fixed setpoints: the demo alarms watch them at 21 degC. Tests load the building
without functions (the default), so their points have nothing writing to them but the test itself.
"""

import importlib
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from bms.alarms.importer import import_alarms
from bms.logic.models import Rule
from bms.points.importer import ImportFailed, import_points
from bms.points.models import Device, Point
from bms.schedules.models import Calendar, ExceptionEvent, Schedule, ScheduleTarget

DEMO_CSV = Path(__file__).resolve().parents[2] / "demo" / "demo_building.csv"
DEMO_BACNET_CSV = DEMO_CSV.with_name("demo_bacnet.csv")
DEMO_ALARMS_CSV = DEMO_CSV.with_name("demo_alarms.csv")
DEMO_BACNET_ALARMS_CSV = DEMO_CSV.with_name("demo_bacnet_alarms.csv")
BACNET_DEVICE_INSTANCE = 1001  # the simulator's default --bacnet-instance
#: what the Operators group may do: write values, acknowledge and shelve alarms
OPERATOR_PERMISSIONS = (("points", "write_point"), ("alarms", "acknowledge_alarm"), ("alarms", "shelve_alarm"))

# -- the demo's functions (--functions) --------------------------------------------------------------------------

OCCUPIED_SETPOINT, UNOCCUPIED_SETPOINT = 21.0, 17.0
#: below the operators' manual 8, so an override wins; above the logic's 14 and the usual 16
SCHEDULE_PRIORITY = 12
LOGIC_PRIORITY = 14
HOLIDAYS = {
    "name": "public-holidays",
    "description": "German public holidays (national), from the holidays package",
    "holiday_country": "DE",
    "holiday_subdivision": "",
}
WORKDAY = [{"time": "07:00", "value": OCCUPIED_SETPOINT}, {"time": "19:00", "value": UNOCCUPIED_SETPOINT}]
OCCUPANCY = {
    "name": "occupancy",
    "description": "Office hours: AHU 1's zones at 21 degC on weekdays 07:00-19:00, 17 degC otherwise",
    "value_type": "real",
    "default_value": UNOCCUPIED_SETPOINT,  # weekends, nights and holidays
    "weekly": {day: WORKDAY for day in ("monday", "tuesday", "wednesday", "thursday", "friday")},
    "time_zone": "Europe/Berlin",  # the holidays are German: the office keeps German hours
    "effective_from": None,
    "effective_to": None,
    "enabled": True,
}
OCCUPANCY_TARGETS = ("zone1_setpoint", "zone2_setpoint")
#: a public holiday takes the whole day: unoccupied from midnight
HOLIDAY_EXCEPTION = {
    "description": "public holidays: unoccupied",
    "event_priority": 10,
    "time_values": [{"time": "00:00", "value": UNOCCUPIED_SETPOINT}],
}
RULES = {
    "zone1_handover": {
        "description": "Zone 1's unit follows the BMS's valve while the BMS has a good zone 1 temperature",
        "kind": "expression",
        "expression": "good({zone1_temp})",
        "output": "zone1_remote",
        "cycle_time": 5.0,
    },
    "zone1_loop": {
        "description": "Zone 1 temperature loop: PID on the reheat valve toward zone1_setpoint",
        "kind": "pid",
        "inputs": {
            "pv": "{zone1_temp}",
            "sp": "{zone1_setpoint}",
            # where a PID without state starts (bumpless, not from a closed valve): the opening that warms AHU 1's
            # supply air to the setpoint, 5 % per K (the simulator's reheat span is 20 K)
            "track": "limit(({zone1_setpoint} - {ahu1_supply_temp}) * 5, 0, 100)",
        },
        # SIMC for the simulator's zone 1 (gain 0.2 K per %, time constant 30 s, dead time about 2 s: the poll,
        # the plant's step, the sample) with tau_c 3 s gives kp 30 / (0.2 * 5) = 30 and Ti 20 s. Taken calmer,
        # kp 20 and Ti about 67 s (ki 0.3): the valve moves less with the sensor's noise, and after a disturbance
        # that drives the valve to its limit (clamp anti-windup holds the integral there) the integral gathered on
        # the way back overshoots by at most about 0.3 K (offline, a 7 K drop, command delays 0.2 to 3 s).
        "params": {
            "kp": 20.0,
            "ki": 0.3,
            "sample_time": 1.0,
            "out_min": 0.0,
            "out_max": 100.0,
            "anti_windup": "clamp",
        },
        "output": "zone1_valve",
        "cycle_time": 1.0,
        "output_deadband": 0.2,  # % of valve travel: the sensor's noise through kp is about 0.4 %
    },
}


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
        parser.add_argument(
            "--functions",
            action="store_true",
            help="also load the occupancy schedule, its holiday calendar and zone 1's temperature loop (make demo)",
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
        functions: bool = False,
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
        if functions:
            self._load_functions()
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

    def _load_functions(self) -> None:
        """The occupancy schedule, its calendar and zone 1's rules, updated in place when run again.

        Updated rather than replaced: the schedule's exception keeps its id, which is part of its occurrences'
        identities, so a reload changes nothing the engine computes and writes nothing (docs/schedules.md).
        """
        try:
            with transaction.atomic():
                calendar = _upsert(Calendar, HOLIDAYS)
                schedule = _upsert(Schedule, OCCUPANCY)
                for name in OCCUPANCY_TARGETS:
                    target = ScheduleTarget.objects.filter(schedule=schedule, point__name=name).first()
                    target = target or ScheduleTarget(schedule=schedule, point=Point.objects.get(name=name))
                    target.priority = SCHEDULE_PRIORITY
                    target.save()
                holiday = ExceptionEvent.objects.filter(schedule=schedule, kind="calendar", calendar=calendar).first()
                holiday = holiday or ExceptionEvent(schedule=schedule, kind="calendar", calendar=calendar)
                _assign(holiday, HOLIDAY_EXCEPTION)
                for name, fields in RULES.items():
                    _upsert(Rule, {"name": name, "priority": LOGIC_PRIORITY, "enabled": True, **fields})
        except ValidationError as exc:
            # the shipped definitions are checked by every save; a refusal means they no longer fit the points
            raise CommandError(f"the demo's schedule or rules are invalid: {exc}") from exc
        self.stdout.write(
            f"demo building: schedule {OCCUPANCY['name']} on {', '.join(OCCUPANCY_TARGETS)} at priority "
            f"{SCHEDULE_PRIORITY} (calendar {HOLIDAYS['name']}), rules {', '.join(RULES)} at priority {LOGIC_PRIORITY}"
        )


def _assign(obj, fields: dict):
    """Set ``fields`` on ``obj`` and save it (the model's save checks it whole)."""
    for field, value in fields.items():
        setattr(obj, field, value)
    obj.save()
    return obj


def _upsert(model, fields: dict):
    """The row of ``model`` named ``fields["name"]``, created or updated to ``fields`` through the model's checks."""
    obj = model.objects.filter(name=fields["name"]).first() or model()
    return _assign(obj, fields)
