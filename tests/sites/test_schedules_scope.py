"""Schedules and calendars belong to sites: a north user meets south's exactly as if they did not exist.

Every south object is tried by id through every route (API and web editor) by
each north-restricted role and by a token narrowed to north; each answer must
equal, byte for byte but for the id, the answer for an id that does not exist.
Lists and counts leave them out, a south point, calendar or site named in a
body reads as an unknown name, a target or calendar of another site is refused
with the model's message, and a shared calendar is seen by all but changed only
by a caller who sees every site.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from bms.logic.models import Rule
from bms.points.models import Point
from bms.schedules.models import Calendar, CalendarEntry, ExceptionEvent, Schedule, ScheduleTarget
from bms.sites.models import DEFAULT_SITE, Site, TokenSite
from bms.tokens.services import issue
from redundancy import configsync
from tests.sites.conftest import JsonClient, Sites, make_user, restrict

SCHEDULES = "/api/v1/schedules/"
CALENDARS = "/api/v1/calendars/"
MISSING = 987654
WEEK = {"monday": [{"time": "07:00", "value": 21.0}, {"time": "18:00", "value": 17.0}]}
ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nX-WR-CALNAME:{name}\r\n"
    "BEGIN:VEVENT\r\nUID:1@test\r\nDTSTAMP:20260101T000000Z\r\nSUMMARY:closed\r\n"
    "DTSTART;VALUE=DATE:20261224\r\nDTEND;VALUE=DATE:20261225\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


@dataclass
class Plan:
    """A schedule and a calendar per site, and the shared calendar ``holidays`` both schedules use."""

    north: Schedule
    south: Schedule
    north_cal: Calendar
    south_cal: Calendar
    holidays: Calendar


def schedule_in(site: Site, calendar: Calendar, shared: Calendar) -> Schedule:
    schedule = Schedule.objects.create(
        name=f"{site.name}_sched", value_type="real", default_value=17.0, weekly=WEEK, site=site
    )
    ScheduleTarget.objects.create(schedule=schedule, point=Point.objects.get(name=f"{site.name}_setpoint"))
    for used in (calendar, shared):
        ExceptionEvent.objects.create(schedule=schedule, kind="calendar", calendar=used, time_values=[])
    return schedule


@pytest.fixture
def plan(sites: Sites) -> Plan:
    holidays = Calendar.objects.create(name="holidays", holiday_country="DE")
    north_cal = Calendar.objects.create(name="north_cal", site=sites.north)
    south_cal = Calendar.objects.create(name="south_cal", site=sites.south)
    CalendarEntry.objects.create(calendar=south_cal, kind="date", date=date(2026, 12, 24))
    return Plan(
        north=schedule_in(sites.north, north_cal, holidays),
        south=schedule_in(sites.south, south_cal, holidays),
        north_cal=north_cal,
        south_cal=south_cal,
        holidays=holidays,
    )


def north_token_client(everywhere: User, sites: Sites) -> JsonClient:
    """A client with an admin token of the unrestricted engineer, narrowed to north."""
    issued = issue(everywhere, "north script", "admin", 30, by=everywhere)
    TokenSite.objects.create(token=issued.token, site=sites.north)
    client = JsonClient()
    client.client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {issued.key}"
    return client


@pytest.fixture(params=["viewer", "operator", "engineer", "administrator", "token"])
def north_client(request: pytest.FixtureRequest, north_users: dict[str, User], everywhere: User, sites: Sites):
    """Each north-restricted role, and a token narrowed to north whose user sees every site."""
    if request.param == "token":
        return north_token_client(everywhere, sites)
    return JsonClient(north_users[request.param])


def answer(response: Any, pk: int) -> tuple[int, str, str]:
    """Status, content type and body of a response, with the id asked for written as ``<id>``."""
    return response.status_code, response["Content-Type"], response.content.decode().replace(str(pk), "<id>")


def call(client: JsonClient, method: str, path: str, body: Any) -> Any:
    if method == "get":
        return client.get(path)
    if method == "delete":
        return client.delete(path)
    return client.send(method, path, body)


SCHEDULE_ROUTES = [
    ("get", SCHEDULES + "{}/", None),
    ("get", SCHEDULES + "{}/next-transitions", None),
    ("put", SCHEDULES + "{}/", {"name": "taken", "value_type": "real", "weekly": WEEK}),
    ("patch", SCHEDULES + "{}/", {"description": "mine now"}),
    ("patch", SCHEDULES + "{}/", {"weekly": "not a table"}),
    ("delete", SCHEDULES + "{}/", None),
]
CALENDAR_ROUTES = [
    ("get", CALENDARS + "{}/", None),
    ("get", CALENDARS + "{}/ical", None),
    ("put", CALENDARS + "{}/", {"name": "taken"}),
    ("patch", CALENDARS + "{}/", {"holiday_country": "XX"}),
    ("delete", CALENDARS + "{}/", None),
]


def test_every_south_schedule_and_calendar_by_id_answers_like_one_that_does_not_exist(north_client, plan):
    tried = [(plan.south.pk, route) for route in SCHEDULE_ROUTES] + [(plan.south_cal.pk, r) for r in CALENDAR_ROUTES]
    for pk, (method, path, body) in tried:
        south = call(north_client, method, path.format(pk), body)
        missing = call(north_client, method, path.format(MISSING), body)
        assert answer(south, pk) == answer(missing, MISSING), (method, path)
        assert south.status_code == 404, (method, path, south.status_code)
    # nothing of south was changed or deleted
    south = Schedule.objects.get(pk=plan.south.pk)
    assert (south.name, south.description) == ("south_sched", "")
    assert Calendar.objects.get(pk=plan.south_cal.pk).holiday_country == ""


def test_an_engineer_of_north_gets_404_for_south_objects_before_any_check_of_the_body(north_users, plan):
    engineer = JsonClient(north_users["engineer"])
    response = engineer.patch(f"{SCHEDULES}{plan.south.pk}/", {"weekly": "not a table"})
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": f"There is no schedule with id {plan.south.pk}."}
    response = engineer.delete(f"{CALENDARS}{plan.south_cal.pk}/")
    assert response.status_code == 404
    assert Calendar.objects.filter(pk=plan.south_cal.pk).exists()


def test_lists_and_counts_leave_other_sites_out(north_client, plan):
    schedules = north_client.get(SCHEDULES).json()
    assert (schedules["count"], [row["name"] for row in schedules["results"]]) == (1, ["north_sched"])
    assert schedules["results"][0]["site"] == "north"
    calendars = north_client.get(CALENDARS).json()
    assert calendars["count"] == 2
    by_name = {row["name"]: row for row in calendars["results"]}
    assert sorted(by_name) == ["holidays", "north_cal"]
    assert by_name["holidays"]["site"] is None
    assert by_name["holidays"]["used_by"] == ["north_sched"], "a shared calendar names only the caller's schedules"


def test_an_unrestricted_caller_sees_every_site(everywhere, plan):
    client = JsonClient(everywhere)
    assert [row["name"] for row in client.get(SCHEDULES).json()["results"]] == ["north_sched", "south_sched"]
    calendars = {row["name"]: row for row in client.get(CALENDARS).json()["results"]}
    assert sorted(calendars) == ["holidays", "north_cal", "south_cal"]
    assert calendars["holidays"]["used_by"] == ["north_sched", "south_sched"]
    assert client.get(f"{SCHEDULES}{plan.south.pk}/").json()["site"] == "south"


def unknown_message(response: Any, *path: str | int) -> str:
    fields = response.json()["fields"]
    for key in path:
        fields = fields[str(key)] if isinstance(fields, dict) else fields[key]
    return fields[0]


def test_a_south_point_calendar_or_site_in_a_body_reads_as_an_unknown_name(north_users, plan):
    engineer = JsonClient(north_users["engineer"])
    base = {"name": "new_sched", "value_type": "real", "weekly": WEEK, "site": "north"}

    def refused(body: dict[str, Any], *path: str | int) -> str:
        response = engineer.post(SCHEDULES, body)
        assert response.status_code == 400, response.json()
        return unknown_message(response, *path)

    south_point = refused({**base, "targets": [{"point": "south_setpoint"}]}, "targets", 0, "point")
    no_point = refused({**base, "targets": [{"point": "nowhere_setpoint"}]}, "targets", 0, "point")
    assert south_point.replace("south_setpoint", "X") == no_point.replace("nowhere_setpoint", "X")
    exception = {"kind": "calendar", "time_values": []}
    south_cal = refused({**base, "exceptions": [{**exception, "calendar": "south_cal"}]}, "exceptions", 0, "calendar")
    no_cal = refused({**base, "exceptions": [{**exception, "calendar": "nowhere_cal"}]}, "exceptions", 0, "calendar")
    assert south_cal.replace("south_cal", "X") == no_cal.replace("nowhere_cal", "X")
    south_site = refused({**base, "site": "south"}, "site")
    assert south_site == refused({**base, "site": "nowhere"}, "site").replace("nowhere", "south")
    assert not Schedule.objects.filter(name="new_sched").exists()

    made = engineer.post(
        SCHEDULES,
        {
            **base,
            "targets": [{"point": "north_setpoint", "priority": 15}],
            "exceptions": [{**exception, "calendar": "holidays"}],
        },
    )
    assert made.status_code == 201, made.json()
    assert made.json()["site"] == "north"
    assert Schedule.objects.get(name="new_sched").site.name == "north"


def test_a_schedule_made_without_a_site_gets_the_default_site_only_when_the_caller_sees_it(
    north_users, everywhere, sites
):
    body = {"name": "plain", "value_type": "bool"}
    refused = JsonClient(north_users["engineer"]).post(SCHEDULES, body)
    assert refused.status_code == 400
    assert refused.json()["fields"] == {"site": ["This field is required."]}
    main = Site.objects.get_or_create(name=DEFAULT_SITE)[0]
    both = restrict(make_user("main_and_north", "engineer"), main, sites.north)
    made = JsonClient(both).post(SCHEDULES, body)
    assert made.status_code == 201 and made.json()["site"] == DEFAULT_SITE
    made = JsonClient(everywhere).post(SCHEDULES, {**body, "name": "plain2"})
    assert made.status_code == 201 and made.json()["site"] == DEFAULT_SITE


def test_a_target_or_calendar_of_another_site_is_refused_naming_it(everywhere, plan):
    client = JsonClient(everywhere)
    body = {"name": "mixed", "value_type": "real", "weekly": WEEK, "site": "north"}
    response = client.post(SCHEDULES, {**body, "targets": [{"point": "south_setpoint"}]})
    assert response.status_code == 400
    message = unknown_message(response, "targets", 0, "point")
    assert "south_setpoint is a point of site south" in message and "of site north" in message
    exception = {"kind": "calendar", "calendar": "south_cal", "time_values": []}
    response = client.post(SCHEDULES, {**body, "exceptions": [exception]})
    assert response.status_code == 400
    assert "calendar south_cal is of site south" in unknown_message(response, "exceptions", 0, "calendar")
    assert not Schedule.objects.filter(name="mixed").exists()
    # moving a schedule to another site while it writes this one's points is refused, naming the point
    response = client.patch(f"{SCHEDULES}{plan.north.pk}/", {"site": "south"})
    assert response.status_code == 400
    assert any("north_setpoint is a point of site north" in text for text in response.json()["fields"]["site"])
    assert Schedule.objects.get(pk=plan.north.pk).site.name == "north"
    # the models refuse it too (admin, imports, code)
    with pytest.raises(Exception, match="a schedule writes only points of its own site"):
        ScheduleTarget.objects.create(schedule=plan.north, point=Point.objects.get(name="south_temp"))
    with pytest.raises(Exception, match="south_sched of site south uses this calendar"):
        plan.holidays.site = plan.north.site
        plan.holidays.save()


def test_a_shared_calendar_is_seen_by_all_and_changed_only_by_who_sees_every_site(north_users, everywhere, plan):
    engineer = JsonClient(north_users["engineer"])
    shown = engineer.get(f"{CALENDARS}{plan.holidays.pk}/")
    assert shown.status_code == 200 and shown.json()["site"] is None
    assert engineer.get(f"{CALENDARS}{plan.holidays.pk}/ical").status_code == 200
    for method, body in (("patch", {"description": "mine"}), ("put", {"name": "holidays"}), ("delete", None)):
        refused = call(engineer, method, f"{CALENDARS}{plan.holidays.pk}/", body)
        assert refused.status_code == 403, method
        assert refused.json()["error"] == "forbidden"
        assert "may not change shared calendars" in refused.json()["detail"]
    assert Calendar.objects.get(pk=plan.holidays.pk).description == ""
    # making one: shared is refused, no site at all must be said, one of the caller's sites is fine
    assert engineer.post(CALENDARS, {"name": "new_shared", "site": None}).status_code == 403
    missing_site = engineer.post(CALENDARS, {"name": "new_shared"})
    assert missing_site.status_code == 400 and missing_site.json()["fields"] == {"site": ["This field is required."]}
    made = engineer.post(CALENDARS, {"name": "north_only", "site": "north"})
    assert made.status_code == 201 and made.json()["site"] == "north"
    assert engineer.patch(f"{CALENDARS}{made.json()['id']}/", {"site": None}).status_code == 403
    assert not Calendar.objects.filter(name="new_shared").exists()
    # who sees every site changes it, and makes shared calendars as before (no site given: shared)
    assert JsonClient(everywhere).patch(f"{CALENDARS}{plan.holidays.pk}/", {"description": "x"}).status_code == 200
    assert JsonClient(everywhere).post(CALENDARS, {"name": "shared2"}).json()["site"] is None


def test_ical_import_respects_sites(north_users, everywhere, plan):
    engineer = JsonClient(north_users["engineer"])
    imported = engineer.post(f"{CALENDARS}import", {"ical": ICS.format(name="north_days"), "site": "north"})
    assert imported.status_code == 200, imported.json()
    assert Calendar.objects.get(name="north_days").site.name == "north"
    no_site = engineer.post(f"{CALENDARS}import", {"ical": ICS.format(name="nosite")})
    assert no_site.status_code == 400 and no_site.json()["fields"] == {"site": ["This field is required."]}
    assert engineer.post(f"{CALENDARS}import", {"ical": ICS.format(name="x"), "site": None}).status_code == 403
    # a south calendar's name answers as a taken name, with or without replace, and south's stays as it was
    for replace in (False, True):
        taken = engineer.post(f"{CALENDARS}import", {"ical": ICS.format(name="south_cal"), "replace": replace})
        assert taken.status_code == 400
        assert taken.json()["fields"] == {"name": ["Calendar with this Name already exists."]}
    assert Calendar.objects.get(name="south_cal").entries.get().date == date(2026, 12, 24)
    refused = engineer.post(f"{CALENDARS}import", {"ical": ICS.format(name="holidays"), "replace": True})
    assert refused.status_code == 403
    assert plan.holidays.entries.count() == 0
    replaced = engineer.post(f"{CALENDARS}import", {"ical": ICS.format(name="north_cal"), "replace": True})
    assert replaced.status_code == 200 and replaced.json()["created"] is False
    assert Calendar.objects.get(name="north_cal").site.name == "north", "a replaced calendar keeps its site"
    shared = JsonClient(everywhere).post(f"{CALENDARS}import", {"ical": ICS.format(name="everyone")})
    assert shared.status_code == 200 and Calendar.objects.get(name="everyone").site is None


# ---- the web pages ----------------------------------------------------------------------------------------------


def page_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_schedule_pages_show_only_the_callers_sites(north_users, plan):
    client = page_client(north_users["engineer"])
    html = client.get("/schedules/").content.decode()
    assert "north_sched" in html and "north_cal" in html and "holidays" in html
    assert "south" not in html, "no south schedule, calendar, site or point, not even as a user of holidays"
    south = client.get(f"/schedules/{plan.south.pk}/")
    missing = client.get(f"/schedules/{MISSING}/")
    assert south.status_code == missing.status_code == 404
    assert south.content.decode().replace(str(plan.south.pk), "<id>") == missing.content.decode().replace(
        str(MISSING), "<id>"
    )
    editor = client.get(f"/schedules/{plan.north.pk}/").content.decode()
    choices = json.loads(re.search(r'id="schedule-choices" type="application/json">(.*?)</script>', editor).group(1))
    assert [point["name"] for point in choices["points"]] == ["north_setpoint"]
    assert choices["calendars"] == ["holidays", "north_cal"]
    assert choices["calendar_sites"] == {"holidays": None, "north_cal": "north"}
    assert [site["name"] for site in choices["sites"]] == ["north"]
    assert "south" not in client.get("/schedules/new/").content.decode()


def test_an_unrestricted_engineer_sees_both_sites_in_the_pages(everywhere, plan):
    html = page_client(everywhere).get("/schedules/").content.decode()
    assert "north_sched" in html and "south_sched" in html and "south_cal" in html
    assert page_client(everywhere).get(f"/schedules/{plan.south.pk}/").status_code == 200


# ---- replication ----------------------------------------------------------------------------------------------


def test_the_sites_of_schedules_calendars_and_rules_travel_with_the_configuration(plan, sites):
    rule = Rule.objects.create(
        name="north_rule", expression="{north_temp}", output="north_setpoint", priority=12, site=sites.north
    )
    dump = configsync.unpack_dump(configsync.pack_dump(configsync.dump_config()))
    assert {row["name"]: row["site_id"] for row in dump["schedules"]} == {
        "north_sched": sites.north.pk,
        "south_sched": sites.south.pk,
    }
    calendars = {row["name"]: row["site_id"] for row in dump["calendars"]}
    assert calendars == {"holidays": None, "north_cal": sites.north.pk, "south_cal": sites.south.pk}
    assert [(row["name"], row["site_id"]) for row in dump["logic_rules"]] == [("north_rule", sites.north.pk)]
    expected = configsync.hash_dump(dump)

    # this node drifted behind the checks' back: each row in another site
    Schedule.objects.filter(pk=plan.south.pk).update(site=sites.north)
    Calendar.objects.filter(pk=plan.holidays.pk).update(site=sites.south)
    Rule.objects.filter(pk=rule.pk).update(site=sites.south)
    assert configsync.config_hash() != expected

    assert configsync.apply_config(dump) == expected
    assert Schedule.objects.get(pk=plan.south.pk).site_id == sites.south.pk
    assert Calendar.objects.get(pk=plan.holidays.pk).site_id is None
    assert Rule.objects.get(pk=rule.pk).site_id == sites.north.pk


# ---- the migration ------------------------------------------------------------------------------------------------


def checked_now() -> None:
    """Check the deferred foreign keys now: PostgreSQL alters no table with checks pending in the transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def migrate_to(executor: MigrationExecutor, *targets: tuple[str, str]) -> Any:
    """Migrate to ``targets`` (none: the latest) and return the models as they are there."""
    checked_now()
    executor.loader.build_graph()  # what is applied now
    wanted = list(targets) or executor.loader.graph.leaf_nodes()
    state = executor.migrate(wanted)
    return state.apps


@pytest.mark.django_db
def test_the_migration_puts_existing_schedules_in_the_default_site():
    """Run inside the test's transaction (PostgreSQL's DDL is transactional): the schema comes back at rollback."""
    Site.objects.filter(name=DEFAULT_SITE).delete()  # the migration makes it when it has rows to move
    executor = MigrationExecutor(connection)
    old = migrate_to(executor, ("schedules", "0001_initial"))
    legacy = old.get_model("schedules", "Schedule")
    assert "site" not in {field.name for field in legacy._meta.get_fields()}, "the schema before sites"
    legacy.objects.create(name="legacy", value_type="bool", weekly={})
    old.get_model("schedules", "Calendar").objects.create(name="legacy_cal")
    migrate_to(executor)
    assert Schedule.objects.get(name="legacy").site.name == DEFAULT_SITE
    assert Calendar.objects.get(name="legacy_cal").site is None, "an existing calendar stays shared"
