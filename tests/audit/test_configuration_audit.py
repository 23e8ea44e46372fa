"""Every configuration change is an audit entry with who, through what and the difference, whatever the path."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.test import Client

from bms.alarms.models import AlarmClass
from bms.audit.context import Actor, acting
from bms.control.models import AuditEntry
from bms.points.models import Device, Point
from bms.tokens.services import issue
from redundancy import configsync


def entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("origin_seq"))


@pytest.fixture
def admin_client(db) -> tuple[Client, User]:
    admin = User.objects.create_superuser("ada", password="admin-pass-1")
    client = Client()
    client.force_login(admin)
    return client, admin


@pytest.fixture
def plant(db) -> Device:
    return Device.objects.create(name="plant", host="127.0.0.1", port=1502)


def test_a_change_in_the_admin_records_who_via_admin_and_the_difference(admin_client, plant):
    client, admin = admin_client
    form = {
        "name": "plant",
        "driver": "modbus",
        "host": "10.0.0.7",
        "port": "1502",
        "unit_id": "1",
        "poll_interval": "1.0",
        "timeout": "2.0",
        "options": "{}",
        "enabled": "on",
        "site": str(plant.site_id),
        # the device page's points inline: none shown, none added
        "points-TOTAL_FORMS": "0",
        "points-INITIAL_FORMS": "0",
        "points-MIN_NUM_FORMS": "0",
        "points-MAX_NUM_FORMS": "1000",
    }
    response = client.post(f"/admin/points/device/{plant.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    [entry] = entries("device.changed")
    assert entry.username == "ada" and entry.user == admin
    assert entry.detail == {"via": "admin", "id": plant.pk, "changes": {"host": ["127.0.0.1", "10.0.0.7"]}}


def test_a_change_through_the_api_with_a_token_names_the_tokens_user(db, plant):
    engineer = User.objects.create_user("erin")
    engineer.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_alarmdefinition", "change_alarmdefinition"])
    )
    point = Point.objects.create(device=plant, name="zone1_temp", address="ir:0", data_type="float32")
    AlarmClass.objects.get_or_create(name="medium", defaults={"default_priority": 500})
    key = issue(engineer, "config script", "admin", 30, by=engineer).key
    body = {"point": point.name, "kind": "high", "limit": 30.0, "class": "medium"}
    response = Client().post(
        "/api/v1/alarm-definitions/",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 201, response.content
    [entry] = entries("alarmdefinition.created")
    assert entry.username == "erin" and entry.detail["via"] == "api"
    assert entry.detail["changes"]["limit"] == [None, 30.0]


def test_an_import_records_each_object_via_import_naming_the_file(db, plant, tmp_path):
    csv = tmp_path / "points.csv"
    csv.write_text("device,name,address,data_type\nplant,zone2_temp,ir:2,float32\nplant,zone3_temp,ir:4,float32\n")
    call_command("importpoints", str(csv), stdout=io.StringIO())
    created = entries("point.created")
    assert [entry.target for entry in created] == ["zone2_temp", "zone3_temp"]
    assert {entry.detail["via"] for entry in created} == {"import"}
    assert {entry.username for entry in created} == {"manage.py (points.csv)"}


def test_a_password_change_is_recorded_without_the_password_and_memberships_by_name(db):
    user = User.objects.create_user("otto", password="first-pass-1")
    AuditEntry.objects.all().delete()
    with acting(Actor("web", name="ada")):
        user.set_password("second-pass-2")
        user.save()
        user.groups.add(Group.objects.create(name="operators-north"))
    [changed] = entries("user.changed")
    assert changed.detail["changes"] == {"password": ["changed"]}
    assert "second-pass-2" not in json.dumps(changed.detail) and user.password not in json.dumps(changed.detail)
    [groups] = entries("user.groups_changed")
    assert groups.detail["added"] == ["operators-north"] and groups.username == "ada"


def test_a_save_that_changes_nothing_records_nothing_and_a_deletion_keeps_the_last_values(db, plant):
    AuditEntry.objects.all().delete()
    plant.save()
    assert not AuditEntry.objects.exists()
    with acting(Actor("command", name="manage.py shell")):
        plant.save()
        assert not AuditEntry.objects.exists()
        plant.delete()
    [deleted] = entries("device.deleted")
    assert deleted.username == "manage.py shell" and deleted.detail["values"]["host"] == "127.0.0.1"


def test_code_without_an_actor_records_nothing(db):
    Device.objects.create(name="made-by-code", host="127.0.0.1", port=1502)
    assert not AuditEntry.objects.exists()


def test_hostile_values_are_recorded_bounded(db, plant):
    with acting(Actor("api", name="erin")):
        Point.objects.create(device=plant, name="p1", address="ir:0", data_type="float32", description="x" * 255)
    [entry] = entries("point.created")
    assert len(entry.detail["changes"]["description"][1]) == 200


def test_the_standby_applying_the_active_nodes_configuration_records_nothing(db, plant):
    dump = configsync.dump_config()
    Device.objects.create(name="standby-only", host="127.0.0.1", port=1503)
    before = AuditEntry.objects.count()
    with acting(Actor("command", name="manage.py runbms")):  # the node process applies it
        configsync.apply_config(dump)
    assert not Device.objects.filter(name="standby-only").exists()
    assert AuditEntry.objects.count() == before
