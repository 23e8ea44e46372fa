"""Configuration of the field: devices, their data points, and the configuration revision."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models import F

from bms.points.validators import POINT_NAME_VALIDATOR
from bms.sites.models import site_owner
from drivers.base import AddressError, PointConflict, PointSpec
from drivers.registry import DRIVERS, driver_class

# (option, lowest, highest) of the numeric device options the engine and the Modbus driver read
DEVICE_NUMBER_OPTIONS = (
    ("retries", 0, 10),
    ("max_gap", 0, 2000),
    ("stale_after", 0.05, 86400),
    ("reconnect_max", 0.1, 3600),
)
# every data type some driver can decode, in the drivers' order
DATA_TYPES = list(dict.fromkeys(data_type for driver in DRIVERS.values() for data_type in driver.data_types))
# How a point is trended (bms/trends, docs/trends.md): never, on change beyond the trend deadband, every N seconds
# (on a grid of N seconds), or both (on change, and at least every N seconds). New points: both, every 15 minutes.
TREND_OFF, TREND_CHANGE, TREND_INTERVAL, TREND_BOTH = "off", "change", "interval", "both"
TREND_MODES = [
    (TREND_OFF, "off"),
    (TREND_CHANGE, "on change"),
    (TREND_INTERVAL, "every N seconds"),
    (TREND_BOTH, "on change, and at least every N seconds"),
]
TREND_INTERVAL_DEFAULT = 900.0


class Device(models.Model):
    """A field device the engine polls: which driver, where it is, and how often to ask."""

    name = models.CharField(max_length=64, unique=True, validators=[POINT_NAME_VALIDATOR])
    driver = models.CharField(max_length=32, choices=[(name, name) for name in sorted(DRIVERS)], default="modbus")
    host = models.CharField(
        max_length=255, blank=True, help_text="IP address or host name of the device or gateway (virtual: none)"
    )
    port = models.PositiveIntegerField(default=502, validators=[MinValueValidator(1)])
    unit_id = models.PositiveSmallIntegerField(default=1, help_text="Modbus unit id (slave address)")
    poll_interval = models.FloatField(default=1.0, validators=[MinValueValidator(0.05)], help_text="seconds")
    timeout = models.FloatField(default=2.0, validators=[MinValueValidator(0.05)], help_text="seconds per request")
    options = models.JSONField(default=dict, blank=True, help_text='driver options, e.g. {"word_order": "little"}')
    enabled = models.BooleanField(default=True)
    site = site_owner("devices", "the building this device (and its points) belongs to")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        driver = DRIVERS.get(self.driver)
        # A driver that keeps its points' values itself (virtual points) talks to nothing; every other needs a host.
        if not self.host and driver is not None and not driver.holds_values:
            raise ValidationError({"host": "A device needs its IP address or host name."})
        if self.port is not None and self.port > 65535:
            raise ValidationError({"port": "A TCP port is at most 65535."})
        if not isinstance(self.options, dict):
            raise ValidationError({"options": "Options must be a JSON object."})
        for option in ("word_order", "byte_order"):
            if self.options.get(option, "big") not in ("big", "little"):
                raise ValidationError({"options": f'{option} must be "big" or "little".'})
        for option, low, high in DEVICE_NUMBER_OPTIONS:
            value = self.options.get(option)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise ValidationError({"options": f"{option} must be a number from {low} to {high}, not {value!r}."})
            if option in ("retries", "max_gap") and value != int(value):
                raise ValidationError({"options": f"{option} must be a whole number, not {value!r}."})
        for option in ("read_back", "write_multiple"):
            if option in self.options and not isinstance(self.options[option], bool):
                raise ValidationError({"options": f"{option} must be true or false."})


class Point(models.Model):
    """A data point of a device: where it lives in the protocol, how to scale it, who may write it."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="points")
    name = models.CharField(max_length=128, unique=True, validators=[POINT_NAME_VALIDATOR])
    description = models.CharField(max_length=255, blank=True)
    address = models.CharField(max_length=64, help_text="driver address, e.g. hr:100 for Modbus")
    data_type = models.CharField(max_length=16, choices=[(t, t) for t in DATA_TYPES])
    scale = models.FloatField(default=1.0, help_text="engineering = raw * scale + offset")
    offset = models.FloatField(default=0.0)
    unit = models.CharField(max_length=32, blank=True)
    writable = models.BooleanField(default=False)
    min_value = models.FloatField(null=True, blank=True, help_text="lowest value an operator may write")
    max_value = models.FloatField(null=True, blank=True, help_text="highest value an operator may write")
    deadband = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0)], help_text="publish only changes larger than this"
    )
    options = models.JSONField(
        default=dict, blank=True, help_text='driver options of this point, e.g. {"word_order": "little"} (Modbus)'
    )
    enabled = models.BooleanField(default=True)
    relinquish_default = models.JSONField(
        null=True,
        blank=True,
        help_text=(
            "engineering value written when every priority slot is empty (server priority arrays, ADR 0016); "
            "empty: leave the device as it is"
        ),
    )
    trend_mode = models.CharField(
        max_length=8,
        choices=TREND_MODES,
        default=TREND_BOTH,
        help_text="trend samples: off, on change, every N seconds, or both (on change and at least every N s)",
    )
    trend_deadband = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0)],
        help_text="trend a change only beyond this distance from the last sample; empty: the point's deadband",
    )
    trend_interval = models.FloatField(
        default=TREND_INTERVAL_DEFAULT,
        validators=[MinValueValidator(1.0)],
        help_text="seconds: the period of 'every N seconds' and the longest gap of 'at least every N seconds'",
    )

    #: the importer checks a whole point list at once and turns this per-point query off
    check_siblings = True

    class Meta:
        ordering = ["device__name", "name"]
        permissions = [("write_point", "Can write values to field points")]

    def __str__(self) -> str:
        return self.name

    @property
    def value_kind(self) -> str:
        """How the web manager formats values: ``bool``, ``integer`` or ``real`` (scaled or float)."""
        if self.data_type == "bool":
            return "bool"
        if self.data_type.startswith("float") or self.scale != 1 or self.offset != 0:
            return "real"
        return "integer"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.scale == 0:
            errors["scale"] = "Scale must not be zero (writes divide by it)."
        if self.data_type == "bool" and (self.scale != 1 or self.offset != 0):
            errors["scale"] = "A bool point cannot be scaled."
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            errors["min_value"] = "The lowest writable value is above the highest."
        if not isinstance(self.options, dict):
            errors["options"] = "Options must be a JSON object."
        if self.device_id is not None:
            try:
                driver = driver_class(self.device.driver)
                driver.validate_point(self.address, self.data_type)
            except (AddressError, KeyError) as exc:
                errors["address"] = str(exc.args[0] if exc.args else exc)
            else:
                if "options" not in errors:
                    try:
                        driver.validate_point_options(self.data_type, self.options)
                    except AddressError as exc:
                        errors["options"] = str(exc)
                if "address" not in errors and self.check_siblings:
                    conflicts = self.conflicts(list(self.device.points.exclude(pk=self.pk).exclude(name=self.name)))
                    if conflicts:
                        errors["address"] = "; ".join(conflict.message for conflict in conflicts)
        if errors:
            raise ValidationError(errors)

    @property
    def spec(self) -> PointSpec:
        """What the driver needs of this point."""
        options = dict(self.options) if isinstance(self.options, dict) else {}
        return PointSpec(self.name, self.address, self.data_type, options)

    def conflicts(self, others: list[Point]) -> list[PointConflict]:
        """This point's clashes with ``others`` of its device (shared registers, for Modbus)."""
        found = driver_class(self.device.driver).check_point_list([other.spec for other in others] + [self.spec])
        return [conflict for conflict in found if self.name in (conflict.point, conflict.other)]


class ConfigRevision(models.Model):
    """A single counter bumped by every configuration change, so a running engine knows to reload."""

    revision = models.PositiveBigIntegerField(default=0)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"configuration revision {self.revision}"

    @classmethod
    def current(cls) -> int:
        row = cls.objects.filter(pk=1).values_list("revision", flat=True).first()
        return row or 0

    @classmethod
    def bump(cls) -> None:
        """Increment the revision once the surrounding transaction commits."""

        def _bump() -> None:
            updated = cls.objects.filter(pk=1).update(revision=F("revision") + 1)
            if not updated:
                cls.objects.get_or_create(pk=1, defaults={"revision": 1})

        transaction.on_commit(_bump)
