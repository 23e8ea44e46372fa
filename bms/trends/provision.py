"""The node's health points and the trend spool alarm, created by ``migrate`` so every site has them.

A device named ``node`` with driver ``node`` (drivers/node.py) gets one
point per trend writer gauge, and ``node.trend_spool_percent`` gets a high
alarm at the spool warning level (``BMS_TREND_SPOOL_WARN_PERCENT``, 50 % by
default) of class *high*: operators learn that trend samples wait on disk
for the database long before the spool is full and the oldest are dropped,
in the console, the journal and the notifications, like any alarm.

Created once: what an engineer changes or deletes afterwards stays as they
left it (a device called ``node`` with another driver is left alone, and
said so). On a standby the rows are replaced by the active node's
configuration at the next sync, as all configuration is.
"""

from __future__ import annotations

import logging

from django.db import transaction

from bms.trends import conf

log = logging.getLogger(__name__)

DEVICE = "node"
SPOOL_POINT = "node.trend_spool_percent"
#: (point name, gauge, data type, unit, description)
POINTS = (
    (SPOOL_POINT, "trend_spool_percent", "float32", "%", "trend spool fill (samples waiting for the database)"),
    ("node.trend_samples_waiting", "trend_samples_waiting", "int32", "", "trend samples not yet stored"),
    ("node.trend_samples_lost", "trend_samples_lost", "int32", "", "trend samples lost since the engine started"),
)


def ensure_node_health_points(**_: object) -> None:
    """Create the ``node`` device, its points and the spool alarm where they do not exist (a post_migrate hook)."""
    if not conf.node_health_points():
        return
    from bms.alarms.models import AlarmClass, AlarmDefinition
    from bms.points.models import Device, Point

    with transaction.atomic():
        device, created = Device.objects.get_or_create(
            name=DEVICE,
            defaults={"driver": "node", "host": "localhost", "port": 1, "poll_interval": 5.0},
        )
        if not created and device.driver != "node":
            log.warning(
                "a device named %r with driver %s exists: the node's health points were not created",
                DEVICE,
                device.driver,
            )
            return
        if not created:
            return  # made before: an engineer's later changes and deletions stand
        for name, gauge, data_type, unit, description in POINTS:
            Point.objects.create(
                device=device, name=name, address=gauge, data_type=data_type, unit=unit, description=description
            )
        spool = Point.objects.get(name=SPOOL_POINT)
        AlarmDefinition.objects.create(
            name=f"{SPOOL_POINT}.high",
            point=spool,
            kind="high",
            limit=conf.spool_warn_percent(),
            deadband=min(10.0, conf.spool_warn_percent() / 2),
            alarm_class=AlarmClass.objects.filter(name="high").first(),
            area="server",
            message="trend spool {value} {unit} full: samples wait on disk for the database (limit {limit} {unit})",
        )
    log.info("created the node's health points and the trend spool alarm (device %r)", DEVICE)
