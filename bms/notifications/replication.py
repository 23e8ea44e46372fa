"""The notification configuration in the dump that ``redundancy.configsync`` replicates to the standby.

Recipient groups, recipients (webhook secrets included: the sync link is
encrypted, and a node that takes over must sign what it sends) and rules,
with the rules' alarm classes as ``[rule id, class id]`` links.
:data:`NOTIFY_TABLES` lists the tables in the order ``apply_config`` replaces
them: children first (a rule holds its group with ``PROTECT``; foreign keys
are checked at commit).
"""

from __future__ import annotations

from typing import Any

from django.db import models

from bms.notifications.models import NotificationRule, Recipient, RecipientGroup
from redundancy.configrows import dump_tables

#: (dump key, model, unique fields to free before the upsert), in the order apply_config replaces them
NOTIFY_TABLES: tuple[tuple[str, type[models.Model], tuple[str, ...]], ...] = (
    ("notify_rules", NotificationRule, ("name",)),
    ("notify_recipients", Recipient, ("name",)),
    ("notify_groups", RecipientGroup, ("name",)),
)
NOTIFY_MODELS = [model for _key, model, _unique in NOTIFY_TABLES]
RULE_CLASSES = "notify_rule_classes"


def dump_notifications() -> dict[str, list[Any]]:
    """The notification configuration by dump key, rows in primary-key order (call in a transaction)."""
    dump: dict[str, list[Any]] = dump_tables(NOTIFY_TABLES)
    through = NotificationRule.alarm_classes.through
    dump[RULE_CLASSES] = [
        list(link)
        for link in through.objects.order_by("notificationrule_id", "alarmclass_id").values_list(
            "notificationrule_id", "alarmclass_id"
        )
    ]
    return dump


def apply_rule_classes(dump: dict[str, Any]) -> None:
    """Make the rules' alarm classes those of ``dump`` (after the rules and classes are in place)."""
    through = NotificationRule.alarm_classes.through
    through.objects.all().delete()
    through.objects.bulk_create(
        [
            through(notificationrule_id=rule, alarmclass_id=alarm_class)
            for rule, alarm_class in dump.get(RULE_CLASSES, [])
        ]
    )
