"""The admin's logs for a north-restricted engineer: commands and events of north only; the audit trail, token uses
and the notification outbox (rows that name objects of every site) are not there at all. An engineer who sees
every site sees all of it on the same pages (so each check can fail)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User

from bms.control.models import AuditEntry, Command
from bms.events.models import Event
from bms.points.models import Point
from tests.sites.conftest import Sites, staff


@pytest.fixture
def logs(sites: Sites) -> None:
    for site in ("north", "south"):
        point = Point.objects.get(name=f"{site}_setpoint")
        Command.objects.create(
            command_id=f"{site}-cmd",
            point=point,
            point_name=point.name,
            value=20.0,
            payload_hash="x",
            accepted_by="main",
        )
        Event.objects.create(
            time=datetime.now(UTC), kind="comm_lost", source=f"{site}_plc", severity="warning", message=f"{site} lost"
        )
    AuditEntry.objects.create(username="ada", action="device.changed", target="south_plc", detail={})


@pytest.mark.django_db
def test_a_restricted_engineer_sees_north_commands_and_events_and_no_audit(logs, north_users, everywhere):
    north, wide = staff(north_users["engineer"]), staff(everywhere)
    commands = north.get("/admin/control/command/").content.decode()
    assert "north-cmd" in commands and "south-cmd" not in commands
    assert "south-cmd" in wide.get("/admin/control/command/").content.decode()
    south = Command.objects.get(command_id="south-cmd")
    missing = north.get(f"/admin/control/command/{south.pk}/change/")
    assert missing.status_code == 302  # Django's answer for an id that does not exist
    events = north.get("/admin/events/event/").content.decode()
    assert "north lost" in events and "south lost" not in events
    assert "south lost" in wide.get("/admin/events/event/").content.decode()
    for path in ("/admin/control/auditentry/", "/admin/tokens/tokenuse/", "/admin/notifications/notification/"):
        assert north.get(path).status_code == 403, path
        assert wide.get(path).status_code in (200, 403), path  # the engineer's role decides here, not the site
    index = north.get("/admin/").content.decode()
    assert "/admin/control/auditentry/" not in index
    assert wide.get("/admin/control/auditentry/").status_code == 200


@pytest.mark.django_db
def test_a_restricted_administrator_has_no_user_or_group_pages(north_users, everywhere):
    # otherwise it could lift its own restriction or make itself a superuser
    north = staff(north_users["administrator"])
    admin_user = north_users["administrator"]
    for path in ("/admin/auth/user/", f"/admin/auth/user/{admin_user.pk}/change/", "/admin/auth/group/"):
        assert north.get(path).status_code in (302, 403), path
    response = north.post(
        f"/admin/auth/user/{admin_user.pk}/change/", {"username": admin_user.username, "is_superuser": "on"}
    )
    assert response.status_code in (302, 403)
    admin_user.refresh_from_db()
    assert not admin_user.is_superuser
    wide = User.objects.create_user("wide_admin", password="x" * 12)
    wide.groups.add(*north_users["administrator"].groups.all())
    assert staff(wide).get("/admin/auth/user/").status_code == 200
