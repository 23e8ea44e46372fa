"""The schedule, logic and points pages as rendered: what each user may do, read-only on a standby, no inline script."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from bms.accounts import roles
from bms.logic.models import Rule
from bms.points.models import Device, Point
from bms.schedules.models import Calendar, ExceptionEvent, Schedule, ScheduleTarget

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)


@pytest.fixture
def building(db) -> dict:
    roles.sync_roles()
    device = Device.objects.create(name="plant7", host="127.0.0.1", port=1507)
    setpoint = Point.objects.create(
        device=device, name="zone7_sp", address="hr:0", data_type="float32", writable=True, min_value=12, max_value=28
    )
    Point.objects.create(device=device, name="zone7_temp", address="ir:0", data_type="float32")
    calendar = Calendar.objects.create(name="holidays7", holiday_country="DE")
    schedule = Schedule.objects.create(
        name="office7", value_type="real", default_value=17.0, weekly={"monday": [{"time": "07:00", "value": 21.0}]}
    )
    ScheduleTarget.objects.create(schedule=schedule, point=setpoint, priority=14)
    ExceptionEvent.objects.create(schedule=schedule, kind="calendar", calendar=calendar, time_values=[])
    rule = Rule.objects.create(name="follow7", expression="{zone7_temp} + 1", output="zone7_sp", priority=12)
    return {"schedule": schedule, "calendar": calendar, "rule": rule}


def client_for(role: str | None) -> Client:
    client = Client()
    if role is not None:
        user, created = User.objects.get_or_create(username=f"{role}-user")
        if created:
            user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
    return client


def assert_csp_ready(html: str) -> None:
    """All JavaScript in static files: no inline script blocks, no on...= handlers (the coming CSP forbids them)."""
    assert not INLINE_SCRIPT.search(html), INLINE_SCRIPT.search(html).group(0)
    assert not INLINE_HANDLER.search(html), INLINE_HANDLER.search(html).group(0)


def test_pages_need_a_login(building):
    for path in ("/schedules/", f"/schedules/{building['schedule'].pk}/", "/logic/"):
        response = Client().get(path)
        assert response.status_code == 302 and "/login/" in response["Location"]


def test_schedule_list_shows_schedules_calendars_and_the_import_for_engineers(building):
    html = client_for("engineer").get("/schedules/").content.decode()
    assert_csp_ready(html)
    assert 'href="/schedules/new/"' in html
    assert "office7" in html and "zone7_sp (14)" in html
    assert 'data-calendar="holidays7"' in html
    assert f"/api/v1/calendars/{building['calendar'].pk}/ical" in html
    assert 'id="calendar-import"' in html
    assert "bms/schedules.js" in html
    # the menu leads here and to the logic page
    assert 'href="/schedules/"' in html and 'href="/logic/"' in html


def test_viewers_see_the_list_without_editing(building):
    html = client_for("viewer").get("/schedules/").content.decode()
    assert "office7" in html
    assert 'href="/schedules/new/"' not in html
    assert 'id="calendar-import"' not in html
    assert client_for("viewer").get("/schedules/new/").status_code == 404


def test_editor_carries_what_the_script_needs(building):
    pk = building["schedule"].pk
    html = client_for("engineer").get(f"/schedules/{pk}/").content.decode()
    assert_csp_ready(html)
    assert f'data-id="{pk}"' in html and 'data-can-edit="1"' in html
    assert 'data-list-api="/api/v1/schedules/"' in html
    choices = json.loads(
        re.search(r'<script id="schedule-choices" type="application/json">(.*?)</script>', html).group(1)
    )
    assert choices["calendars"] == ["holidays7"]
    assert [point["name"] for point in choices["points"]] == ["zone7_sp"], "writable points only"
    assert ["calendar", "calendar"] in choices["entry_kinds"]
    assert 'id="week-grid"' in html and 'id="transition-table"' in html
    assert '<option value="Europe/Berlin">' in html


def test_editor_is_read_only_for_viewers(building):
    html = client_for("viewer").get(f"/schedules/{building['schedule'].pk}/").content.decode()
    assert 'data-can-edit="0"' in html
    assert "changing them needs the engineer role" in html
    assert client_for("viewer").get("/schedules/999999/").status_code == 404


def test_standby_pages_are_read_only(building, as_backup):
    engineer = client_for("engineer")
    html = engineer.get(f"/schedules/{building['schedule'].pk}/").content.decode()
    assert 'data-can-edit="0"' in html
    assert 'id="schedule-read-only"' in html and "not active" in html
    listing = engineer.get("/schedules/").content.decode()
    assert 'href="/schedules/new/"' not in listing and 'id="calendar-import"' not in listing
    logic = engineer.get("/logic/").content.decode()
    assert 'id="logic-read-only"' in logic and "rule-switch" not in logic
    points = engineer.get("/points/").content.decode()
    assert 'data-can-override="0"' in points and 'id="priority-override"' not in points


def test_logic_page_lists_rules_with_their_points_and_switches(building):
    html = client_for("engineer").get("/logic/").content.decode()
    assert_csp_ready(html)
    assert 'data-rule="follow7"' in html
    assert 'data-reads="zone7_temp"' in html and 'data-writes="zone7_sp"' in html
    assert 'class="rule-switch" data-enable="0"' in html
    assert "bms/logic.js" in html and "bms/livesocket.js" in html
    viewer = client_for("viewer").get("/logic/").content.decode()
    assert 'data-rule="follow7"' in viewer and "rule-switch" not in viewer


def test_points_page_has_the_priority_panel(building):
    operator = client_for("operator").get("/points/").content.decode()
    assert_csp_ready(operator)
    assert 'class="priority" data-point="zone7_sp"' in operator
    assert 'class="priority" data-point="zone7_temp"' not in operator, "read-only points have no array"
    assert 'data-api="/api/v1/points/POINT/priority-array"' in operator
    assert 'data-can-override="1"' in operator and 'data-any-priority="0"' in operator
    assert 'id="priority-level" disabled' in operator, "operators override at the manual priority only"
    assert "bms/priority.js" in operator
    engineer = client_for("engineer").get("/points/").content.decode()
    assert 'data-any-priority="1"' in engineer and 'id="priority-level" disabled' not in engineer
    viewer = client_for("viewer").get("/points/").content.decode()
    assert 'class="priority" data-point="zone7_sp"' in viewer, "viewers read the array"
    assert 'id="priority-override"' not in viewer
