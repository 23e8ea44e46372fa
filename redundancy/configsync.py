"""Configuration replication: the active node's configuration as one dump, applied whole on the standby.

"Configuration" is what engineers edit: devices and points, alarm classes and
definitions, schedules and calendars (``bms.schedules.replication``), notification
rules and recipients (``bms.notifications.replication``), logic rules
(``bms.logic.replication``), API tokens (``bms.tokens.replication``), and the users
and groups operators log in with (so that after a failover they can log in
on the other node with the same password, and history rows keep pointing at
the same users and points: primary keys are preserved). The dump is small
(a few hundred kilobytes for thousands of points), so it travels whole
whenever the configuration revision moves, and the standby replaces its own
configuration with it in one transaction.

:func:`config_hash` is computed the same way on both nodes from their own
tables; equal hashes are what the redundancy page shows as *Verified*.
Blocking functions: run them on the engine's database thread.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

from django.contrib.auth.models import Group, Permission, User
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.db.models.functions import Cast, Concat

from bms.alarms.models import AlarmClass, AlarmDefinition
from bms.audit.context import not_recorded
from bms.logic.replication import LOGIC_MODELS, LOGIC_TABLES, dump_logic
from bms.notifications.replication import NOTIFY_MODELS, NOTIFY_TABLES, apply_rule_classes, dump_notifications
from bms.points.models import ConfigRevision, Device, Point
from bms.schedules.replication import SCHEDULE_MODELS, SCHEDULE_TABLES, dump_schedules
from bms.sites.replication import SITE_MODELS, SITE_TABLES, dump_sites
from bms.tokens.replication import TOKEN_MODELS, TOKEN_TABLES, dump_tokens
from redundancy import framing
from redundancy.configrows import plain_fields

#: in dependency order; per model the fields that travel (``id`` always does)
USER_FIELDS = (
    "username",
    "password",
    "first_name",
    "last_name",
    "email",
    "is_active",
    "is_staff",
    "is_superuser",
)


def _permission_keys(queryset: models.QuerySet) -> list[str]:
    return sorted(f"{p.content_type.app_label}.{p.codename}" for p in queryset.select_related("content_type"))


def dump_config() -> dict[str, Any]:
    """The configuration as plain data, ordered so that equal configurations give equal dumps."""
    with transaction.atomic():
        groups = [
            {"id": group.pk, "name": group.name, "permissions": _permission_keys(group.permissions.all())}
            for group in Group.objects.order_by("pk")
        ]
        users = [
            {
                "id": user.pk,
                **{name: getattr(user, name) for name in USER_FIELDS},
                "groups": sorted(user.groups.values_list("pk", flat=True)),
                "permissions": _permission_keys(user.user_permissions.all()),
            }
            for user in User.objects.order_by("pk")
        ]
        devices = list(Device.objects.order_by("pk").values("id", *plain_fields(Device)))
        points = list(Point.objects.order_by("pk").values("id", *plain_fields(Point)))
        alarm_classes = list(AlarmClass.objects.order_by("pk").values("id", *plain_fields(AlarmClass)))
        alarms = list(AlarmDefinition.objects.order_by("pk").values("id", *plain_fields(AlarmDefinition)))
        schedules = dump_schedules()  # dates as ISO strings: msgpack has no date type
        notifications = dump_notifications()
        logic = dump_logic()
        tokens = dump_tokens()
        sites = dump_sites()
        revision = ConfigRevision.current()
    return {
        "revision": revision,
        "groups": groups,
        "users": users,
        "devices": devices,
        "points": points,
        "alarm_classes": alarm_classes,
        "alarms": alarms,
        **schedules,
        **notifications,
        **logic,
        **tokens,
        **sites,
    }


#: rows JSON-encoded per hash update: the C encoder holds the GIL for a whole call, and one call over 40,000 points
#: held it for most of a second, stalling the engine's loop (bench/scale.py)
HASH_CHUNK_ROWS = 500


#: the largest configuration a node unpacks (a compressed dump says nothing of its size until unpacked)
MAX_DUMP_BYTES = 256 << 20


class DumpTooLarge(ValueError):
    """A packed configuration unpacks to more than :data:`MAX_DUMP_BYTES`."""


def pack_dump(dump: dict[str, Any]) -> bytes:
    """The dump as it travels: msgpack, deflated. 100,000 points made an 18.9 MB dump, over the sync link's
    16 MiB frame; a configuration compresses well (names and addresses repeat)."""
    return zlib.compress(framing.pack(dump), 1)


def unpack_dump(packed: bytes) -> dict[str, Any]:
    """:func:`pack_dump` undone; refuses a dump that would unpack beyond :data:`MAX_DUMP_BYTES`."""
    inflater = zlib.decompressobj()
    raw = inflater.decompress(packed, MAX_DUMP_BYTES)
    if inflater.unconsumed_tail:
        raise DumpTooLarge(f"configuration dump larger than {MAX_DUMP_BYTES} bytes unpacked: refused")
    dump = framing.unpack(raw)
    if not isinstance(dump, dict):
        raise ValueError("configuration dump is not a mapping")
    return dump


def hash_dump(dump: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for key in sorted(key for key in dump if key != "revision"):
        value = dump[key]
        digest.update(json.dumps(key).encode())
        rows = value if isinstance(value, list) else [value]
        for start in range(0, len(rows), HASH_CHUNK_ROWS):
            digest.update(json.dumps(rows[start : start + HASH_CHUNK_ROWS], sort_keys=True, default=str).encode())
    return digest.hexdigest()


_by_revision: tuple[int, str] | None = None


def config_hash() -> str:
    """The hash of this node's configuration as it is in its tables now (reads them all)."""
    global _by_revision
    dump = dump_config()
    digest = hash_dump(dump)
    _by_revision = (dump["revision"], digest)
    return digest


def config_hash_of_revision() -> str:
    """:func:`config_hash`, read again only when the configuration revision moved (one query otherwise).

    Every save through the application moves the revision; an edit behind its
    back (SQL) is found by the periodic full :func:`config_hash`.
    """
    cached = _by_revision
    if cached is not None and cached[0] == ConfigRevision.current():
        return cached[1]
    return config_hash()


def apply_config(dump: dict[str, Any]) -> str:
    """Make this node's configuration equal to ``dump`` (one transaction); return the resulting hash."""
    permissions = {
        f"{p.content_type.app_label}.{p.codename}": p.pk for p in Permission.objects.select_related("content_type")
    }
    # Not recorded again here: the active node recorded each change, and its audit rows arrive as history.
    with transaction.atomic(), not_recorded():
        _replace(Group, [{"id": g["id"], "name": g["name"]} for g in dump["groups"]], ("name",))
        _replace(User, [{"id": u["id"], **{k: u[k] for k in USER_FIELDS}} for u in dump["users"]], ("username",))
        _replace(Device, dump["devices"], ("name",))
        _replace(Point, dump["points"], ("name",))
        # .get: a partner that predates alarms sends none (and then this node keeps none)
        _replace(AlarmClass, dump.get("alarm_classes", []), ("name",))
        _replace(AlarmDefinition, dump.get("alarms", []), ("name",))
        for key, model, unique in SCHEDULE_TABLES:  # children first: an exception holds its calendar (PROTECT)
            _replace(model, dump.get(key, []), unique)
        for key, model, unique in NOTIFY_TABLES:  # children first: a rule holds its group (PROTECT)
            _replace(model, dump.get(key, []), unique)
        apply_rule_classes(dump)
        for key, model, unique in (*LOGIC_TABLES, *TOKEN_TABLES):  # tokens after their users
            _replace(model, dump.get(key, []), unique)
        # Sites last, grants before them: a site the dump lacks is deleted only once nothing refers to it (PROTECT);
        # rows that refer to a site still to come wait for it (foreign keys are checked at commit).
        # A partner that predates sites sends none: this node keeps its own (its devices still need theirs).
        for key, model, unique in reversed(SITE_TABLES) if "sites" in dump else ():
            _replace(model, dump.get(key, []), unique)
        _set_m2m(Group.permissions.through, "group_id", "permission_id", dump["groups"], permissions)
        _set_m2m(User.user_permissions.through, "user_id", "permission_id", dump["users"], permissions)
        through = User.groups.through
        through.objects.all().delete()
        through.objects.bulk_create(
            [through(user_id=u["id"], group_id=group_id) for u in dump["users"] for group_id in u["groups"]]
        )
        _reset_sequences(
            [
                Group,
                User,
                Device,
                Point,
                AlarmClass,
                AlarmDefinition,
                *SCHEDULE_MODELS,
                *NOTIFY_MODELS,
                *LOGIC_MODELS,
                *TOKEN_MODELS,
                *SITE_MODELS,
            ]
        )
        # One bump so the engine (and the web side's caches) notice the change.
        ConfigRevision.bump()
    return config_hash()


def _replace(model: type[models.Model], rows: list[dict[str, Any]], unique: tuple[str, ...]) -> None:
    """Delete rows the dump lacks, free unique names (they may move between keys), upsert by primary key."""
    keep = [row["id"] for row in rows]
    model.objects.exclude(pk__in=keep).delete()
    # "~<pk>": no valid name holds "~", and it fits the shortest unique column (a token's 8-character prefix)
    for field in unique:
        model.objects.update(**{field: Concat(models.Value("~"), Cast("pk", models.CharField()))})
    fields = [name for name in rows[0] if name != "id"] if rows else []
    objects = [model(**row) for row in rows]
    if objects:
        model.objects.bulk_create(objects, update_conflicts=True, unique_fields=["id"], update_fields=fields)


def _set_m2m(through: type[models.Model], owner: str, target: str, rows: list[dict], permissions: dict) -> None:
    through.objects.all().delete()
    links = [
        through(**{owner: row["id"], target: permissions[key]})
        for row in rows
        for key in row["permissions"]
        if key in permissions
    ]
    through.objects.bulk_create(links)


def _reset_sequences(models_: list[type[models.Model]]) -> None:
    # Rows arrived with explicit keys; PostgreSQL's sequences must move past
    # them, or the first row created here after a takeover would collide.
    statements = connection.ops.sequence_reset_sql(no_style(), models_)
    if statements:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
