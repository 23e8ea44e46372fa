"""The built-in roles: four groups and the permissions that say what each may do.

============== =====================================================================================
viewer         ``view_*`` of every BMS model (not users, groups, sessions, the admin log, login attempts)
operator       viewer + ``points.write_point``, ``alarms.acknowledge_alarm``, ``alarms.shelve_alarm``
engineer       operator + add/change/delete of sites, points, devices, alarm definitions and alarm classes,
               schedules (calendars, entries, targets, exceptions) and logic rules, + ``alarms.set_out_of_service``
administrator  every permission, users and groups included
============== =====================================================================================

The groups are created by this app's data migration (``0001_roles``). Permissions of models added
later are granted by ``python manage.py syncroles`` (or by the later app's own migration calling
:func:`sync_roles`): it only adds, unless told ``--exact``. A superuser has every permission anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions

VIEWER = "viewer"
OPERATOR = "operator"
ENGINEER = "engineer"
ADMINISTRATOR = "administrator"
ROLES = (VIEWER, OPERATOR, ENGINEER, ADMINISTRATOR)

#: apps whose models the viewer (and so the operator and engineer) may not even see: besides users and sessions,
#: the login throttle's records (who failed to log in from where) and the void follow tokens
NOT_VIEWED = frozenset({"admin", "auth", "contenttypes", "sessions", "axes", "accounts"})
#: (app label, codename) the operator adds to the viewer's
OPERATOR_EXTRA = frozenset({("points", "write_point"), ("alarms", "acknowledge_alarm"), ("alarms", "shelve_alarm")})
#: (app label, model) the engineer may add, change and delete
ENGINEER_MODELS = (
    ("points", "point"),
    ("points", "device"),
    ("sites", "site"),
    ("alarms", "alarmdefinition"),
    ("alarms", "alarmclass"),
    ("schedules", "schedule"),
    ("schedules", "scheduletarget"),
    ("schedules", "exceptionevent"),
    ("schedules", "calendar"),
    ("schedules", "calendarentry"),
    ("logic", "rule"),
)
#: (app label, codename) the engineer adds besides
ENGINEER_EXTRA = frozenset({("alarms", "set_out_of_service")})

Grant = tuple[str, str]  # (app label, codename), as in "alarms.acknowledge_alarm"


def role_grants(permissions: Iterable[Grant]) -> dict[str, set[Grant]]:
    """Which of ``permissions`` each role gets (a pure function of the permissions that exist)."""
    existing = set(permissions)
    viewer = {(app, code) for app, code in existing if code.startswith("view_") and app not in NOT_VIEWED}
    operator = viewer | (OPERATOR_EXTRA & existing)
    engineering = {
        (app, f"{action}_{model}") for app, model in ENGINEER_MODELS for action in ("add", "change", "delete")
    }
    engineer = operator | ((engineering | ENGINEER_EXTRA) & existing)
    return {VIEWER: viewer, OPERATOR: operator, ENGINEER: engineer, ADMINISTRATOR: existing}


def create_all_permissions(apps: Any = global_apps, using: str = "default") -> None:
    """Create the permissions (and content types) of every model now, not only after ``migrate`` ends.

    Django creates them in its ``post_migrate`` handler, after all migrations: a data migration that
    hands them to groups on a fresh database would find none.
    """
    for app_config in global_apps.get_app_configs():
        # The installed app (its models module is known) against the registry given: create_permissions looks
        # the app up in ``apps`` (a migration's historical models) and skips an app that is not in it yet.
        create_permissions(app_config, verbosity=0, using=using, apps=apps)


def sync_roles(apps: Any = global_apps, exact: bool = False) -> dict[str, int]:
    """Create the four groups if missing and grant each its permissions; returns how many each has now.

    ``exact``: also take away what the rules do not give (permissions an administrator added by hand).
    ``apps``: the registry (a migration passes its historical one).
    """
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    permissions = {
        (permission.content_type.app_label, permission.codename): permission
        for permission in permission_model.objects.select_related("content_type")
    }
    grants = role_grants(permissions)
    counts: dict[str, int] = {}
    for role in ROLES:
        group, _ = group_model.objects.get_or_create(name=role)
        wanted = [permissions[grant] for grant in sorted(grants[role])]
        if exact:
            group.permissions.set(wanted)
        else:
            group.permissions.add(*wanted)
        counts[role] = group.permissions.count()
    return counts
