"""The built-in roles: the data migration creates four groups, each with the permissions of its role."""

from __future__ import annotations

import importlib

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from bms.accounts import roles

_migration = importlib.import_module("bms.accounts.migrations.0001_roles")


def group_permissions(name: str) -> set[str]:
    group = Group.objects.get(name=name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def every_permission() -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in Permission.objects.select_related("content_type")}


def test_role_grants_follow_the_rules():
    existing = {
        ("points", "view_point"),
        ("points", "add_point"),
        ("points", "write_point"),
        ("alarms", "view_alarmjournal"),
        ("alarms", "acknowledge_alarm"),
        ("alarms", "shelve_alarm"),
        ("alarms", "set_out_of_service"),
        ("alarms", "change_alarmdefinition"),
        ("control", "delete_command"),
        ("auth", "view_user"),
        ("auth", "add_user"),
    }
    grants = roles.role_grants(existing)
    assert grants["viewer"] == {("points", "view_point"), ("alarms", "view_alarmjournal")}
    assert grants["operator"] == grants["viewer"] | {
        ("points", "write_point"),
        ("alarms", "acknowledge_alarm"),
        ("alarms", "shelve_alarm"),
    }
    assert grants["engineer"] == grants["operator"] | {
        ("points", "add_point"),
        ("alarms", "change_alarmdefinition"),
        ("alarms", "set_out_of_service"),
    }
    assert grants["administrator"] == existing


@pytest.mark.django_db
def test_viewer_may_only_view_and_never_users_or_groups():
    viewer = group_permissions("viewer")
    assert viewer, "the viewer group has no permissions"
    assert all(permission.split(".")[1].startswith("view_") for permission in viewer)
    assert {"points.view_point", "points.view_device", "alarms.view_alarmjournal", "alarms.view_alarmdefinition"} <= (
        viewer
    )
    assert {"events.view_event", "control.view_command", "control.view_auditentry"} <= viewer
    assert not {p for p in viewer if p.split(".")[0] in {"auth", "admin", "sessions", "contenttypes"}}


@pytest.mark.django_db
def test_operator_adds_writes_acknowledging_and_shelving():
    operator = group_permissions("operator")
    assert operator - group_permissions("viewer") == {
        "points.write_point",
        "alarms.acknowledge_alarm",
        "alarms.shelve_alarm",
    }


@pytest.mark.django_db
def test_engineer_adds_configuration_and_out_of_service():
    extra = group_permissions("engineer") - group_permissions("operator")
    expected = {
        f"{app}.{action}_{model}"
        for app, model in (("points", "point"), ("points", "device"), ("sites", "site"), ("alarms", "alarmdefinition"))
        for action in ("add", "change", "delete")
    }
    expected |= {f"alarms.{action}_alarmclass" for action in ("add", "change", "delete")}
    expected |= {
        f"{app}.{action}_{model}"
        for app, model in roles.ENGINEER_MODELS
        if app in ("schedules", "logic")
        for action in ("add", "change", "delete")
    }
    assert extra == expected | {"alarms.set_out_of_service"}


@pytest.mark.django_db
def test_administrator_has_everything_users_and_groups_included():
    administrator = group_permissions("administrator")
    assert administrator == every_permission()
    assert {"auth.add_user", "auth.change_group", "redundancy.switchover"} <= administrator


@pytest.mark.django_db
def test_role_permissions_reach_the_users_in_the_groups(users):
    assert users["viewer"].has_perm("alarms.view_alarmdefinition")
    assert not users["viewer"].has_perm("alarms.acknowledge_alarm")
    assert users["operator"].has_perm("alarms.acknowledge_alarm")
    assert users["operator"].has_perm("points.write_point")
    assert not users["operator"].has_perm("alarms.set_out_of_service")
    assert users["engineer"].has_perm("alarms.set_out_of_service")
    assert not users["engineer"].has_perm("auth.add_user")
    assert users["administrator"].has_perm("auth.add_user")


@pytest.mark.django_db
def test_the_migration_creates_groups_and_permissions_with_the_historical_models():
    """The migration runs before Django's post_migrate creates permissions: it must create them itself."""
    Group.objects.filter(name__in=roles.ROLES).delete()
    Permission.objects.filter(codename__in=["acknowledge_alarm", "view_alarmjournal", "write_point"]).delete()
    state = MigrationExecutor(connection).loader.project_state(("accounts", "0001_roles"), at_end=False)
    with connection.schema_editor() as editor:
        _migration.create_roles(state.apps, editor)
    assert "alarms.acknowledge_alarm" in group_permissions("operator")
    assert "alarms.view_alarmjournal" in group_permissions("viewer")
    assert "points.write_point" in group_permissions("engineer")
    assert group_permissions("administrator") == every_permission()


@pytest.mark.django_db
def test_syncroles_adds_what_is_missing_and_exact_removes_extras(capsys):
    operator = Group.objects.get(name="operator")
    operator.permissions.remove(Permission.objects.get(codename="shelve_alarm"))
    hand_added = Permission.objects.get(codename="delete_event")
    operator.permissions.add(hand_added)
    call_command("syncroles")
    assert "alarms.shelve_alarm" in group_permissions("operator")
    assert "events.delete_event" in group_permissions("operator"), "without --exact nothing is taken away"
    call_command("syncroles", "--exact")
    assert "events.delete_event" not in group_permissions("operator")
    assert "operator:" in capsys.readouterr().out
