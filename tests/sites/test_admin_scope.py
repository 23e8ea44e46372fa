"""The Django admin for a north-restricted engineer: south's objects do not exist there (bms/sites/admin_scope.py).

Each changelist (devices, points, alarm definitions, calendars, schedules, rules, sites) lists and counts only
north's objects and names nothing of south's (list filters included); south's change, delete and history URLs by
id answer exactly as a missing id does; the site, device, point and calendar choices offer only north's (and shared
calendars), and a POST naming a south object is refused with the message a nonexistent id gets. Who may see which
site is shown and edited only by administrators who see every site, inline on the user's page too. An engineer who
sees every site sees both sites' objects on the same pages (so each check can fail).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.forms import MultiWidget
from django.test import Client

from bms.alarms.models import AlarmClass, AlarmDefinition
from bms.logic.models import Rule
from bms.points.models import Device, Point
from bms.schedules.models import Calendar, ExceptionEvent, Schedule, ScheduleTarget
from bms.sites.models import Site, SiteAccess
from tests.sites.conftest import Sites, make_user, restrict, staff

MISSING = 987654
WEEK = {"monday": [{"time": "07:00", "value": 21.0}, {"time": "18:00", "value": 17.0}]}


@dataclass
class Objects:
    """One of each site-scoped kind per site (by site name), and the shared calendar ``holidays``."""

    by_site: dict[str, dict[str, Any]]
    holidays: Calendar


@pytest.fixture
def objects(sites: Sites) -> Objects:
    high = AlarmClass.objects.get(name="high")
    holidays = Calendar.objects.create(name="holidays")
    by_site: dict[str, dict[str, Any]] = {}
    for site in (sites.north, sites.south):
        calendar = Calendar.objects.create(name=f"{site.name}_cal", site=site)
        schedule = Schedule.objects.create(
            name=f"{site.name}_sched", value_type="real", default_value=17.0, weekly=WEEK, site=site
        )
        ScheduleTarget.objects.create(schedule=schedule, point=Point.objects.get(name=f"{site.name}_setpoint"))
        ExceptionEvent.objects.create(schedule=schedule, kind="calendar", calendar=calendar, time_values=[])
        by_site[site.name] = {
            "site": site,
            "device": Device.objects.get(name=f"{site.name}_plc"),
            "point": Point.objects.get(name=f"{site.name}_temp"),
            "alarmdefinition": AlarmDefinition.objects.create(
                name=f"{site.name}_high", point=Point.objects.get(name=f"{site.name}_temp"), kind="high", limit=25.0,
                alarm_class=high,
            ),
            "calendar": calendar,
            "schedule": schedule,
            "rule": Rule.objects.create(
                name=f"{site.name}_rule", expression=f"{{{site.name}_temp}} + 1", output=f"{site.name}_setpoint",
                priority=12, site=site,
            ),
        }  # fmt: skip
    return Objects(by_site, holidays)


ADMIN_URLS = {
    "site": "/admin/sites/site/",
    "device": "/admin/points/device/",
    "point": "/admin/points/point/",
    "alarmdefinition": "/admin/alarms/alarmdefinition/",
    "calendar": "/admin/schedules/calendar/",
    "schedule": "/admin/schedules/schedule/",
    "rule": "/admin/logic/rule/",
}


@pytest.fixture
def north(north_users: dict[str, User]) -> Client:
    return staff(north_users["engineer"])


@pytest.fixture
def wide(everywhere: User) -> Client:
    return staff(everywhere)


def page_text(response: Any) -> str:
    """A page's HTML without its CSRF token (masked anew on every page)."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", response.content.decode())


def names(queryset: Any) -> set[str]:
    return {obj.name for obj in queryset}


@pytest.mark.parametrize("kind", list(ADMIN_URLS))
def test_changelists_list_and_count_only_the_callers_sites(objects: Objects, north: Client, wide: Client, kind: str):
    north_name, south_name = objects.by_site["north"][kind].name, objects.by_site["south"][kind].name
    mine = north.get(ADMIN_URLS[kind])
    assert mine.status_code == 200
    changelist = mine.context["cl"]
    shown = names(changelist.result_list)
    assert north_name in shown and south_name not in shown
    assert changelist.result_count == changelist.full_result_count == len(shown)
    # nothing on the page names south: not the rows, not a list filter's choices, not a count
    assert b"south" not in mine.content.lower()
    everything = wide.get(ADMIN_URLS[kind])
    assert {north_name, south_name} <= names(everything.context["cl"].result_list)
    assert b"south" in everything.content.lower()


@pytest.mark.parametrize("kind", list(ADMIN_URLS))
@pytest.mark.parametrize("view", ["change/", "delete/", "history/"])
def test_another_sites_object_by_id_is_answered_like_a_missing_id(
    objects: Objects, north: Client, kind: str, view: str
):
    south = objects.by_site["south"][kind]
    theirs = north.get(f"{ADMIN_URLS[kind]}{south.pk}/{view}", follow=True)
    missing = north.get(f"{ADMIN_URLS[kind]}{MISSING}/{view}", follow=True)
    assert theirs.redirect_chain == missing.redirect_chain == [("/admin/", 302)]
    # the admin index says so, in the very words it has for a missing id
    assert page_text(theirs) == page_text(missing).replace(str(MISSING), str(south.pk))
    assert [str(m) for m in theirs.context["messages"]] == [
        f"{south._meta.verbose_name} with ID \u201c{south.pk}\u201d doesn\u2019t exist. Perhaps it was deleted?"
    ]
    # and their own object opens
    assert north.get(f"{ADMIN_URLS[kind]}{objects.by_site['north'][kind].pk}/{view}").status_code == 200


def test_a_post_to_another_sites_object_changes_nothing(objects: Objects, north: Client):
    south = objects.by_site["south"]["point"]
    answered = north.post(f"/admin/points/point/{south.pk}/change/", {"name": south.name, "description": "mine now"})
    assert answered.status_code == 302 and answered["Location"] == "/admin/"
    deleted = north.post(f"/admin/points/point/{south.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302 and deleted["Location"] == "/admin/"
    south.refresh_from_db()
    assert south.description != "mine now"
    # the changelist's bulk delete only reaches rows the caller sees
    north.post("/admin/points/point/", {"action": "delete_selected", "_selected_action": [south.pk], "post": "yes"})
    assert Point.objects.filter(pk=south.pk).exists()


def field_choices(response: Any, field: str, formset: str | None = None) -> set[str]:
    """The choices (as text) of a field of the page's form, or of its inline formset ``formset``."""
    if formset is None:
        form = response.context["adminform"].form
    else:
        inline = next(i for i in response.context["inline_admin_formsets"] if i.formset.prefix == formset)
        form = inline.formset.empty_form
    return {obj.name for obj in form.fields[field].queryset}


def test_dropdowns_offer_only_the_callers_sites(objects: Objects, north: Client, wide: Client):
    device_add = north.get("/admin/points/device/add/")
    assert field_choices(device_add, "site") == {"north"}
    assert field_choices(north.get("/admin/points/point/add/"), "device") == {"north_plc"}
    definition_add = north.get("/admin/alarms/alarmdefinition/add/")
    for field in ("point", "setpoint_point", "suppression_point"):
        assert field_choices(definition_add, field) == {"north_temp", "north_setpoint"}
    schedule_add = north.get("/admin/schedules/schedule/add/")
    assert field_choices(schedule_add, "site") == {"north"}
    assert field_choices(schedule_add, "point", formset="targets") == {"north_temp", "north_setpoint"}
    assert field_choices(schedule_add, "calendar", formset="exceptions") == {"north_cal", "holidays"}
    assert field_choices(north.get("/admin/logic/rule/add/"), "site") == {"north"}
    assert field_choices(north.get("/admin/schedules/calendar/add/"), "site") == {"north"}
    # the point pickers' autocomplete answers from the same narrowed list
    found = north.get(
        "/admin/autocomplete/",
        {"app_label": "schedules", "model_name": "scheduletarget", "field_name": "point", "term": "temp"},
    ).json()
    assert [row["text"] for row in found["results"]] == ["north_temp"]
    # an engineer who sees every site is offered both
    assert field_choices(wide.get("/admin/points/device/add/"), "site") >= {"north", "south"}
    assert field_choices(wide.get("/admin/points/point/add/"), "device") == {"north_plc", "south_plc"}


def form_data(response: Any) -> dict[str, Any]:
    """What a browser would post back from an admin change page, unchanged: the form and its inline formsets."""
    data: dict[str, Any] = {}

    def add(form: Any) -> None:
        for name, field in form.fields.items():
            value = form[name].value()  # as the page shows it (prepared for the widget)
            if isinstance(field.widget, MultiWidget):  # a date and a time: posted as name_0, name_1
                for index, part in enumerate(field.widget.decompress(value)):
                    if part is not None:
                        data[f"{form.add_prefix(name)}_{index}"] = part
            elif isinstance(value, bool):
                if value:
                    data[form.add_prefix(name)] = "on"
            elif value is not None:
                data[form.add_prefix(name)] = value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        add(inline.formset.management_form)
        for form in inline.formset.forms:
            add(form)
    return data


def test_moving_a_device_to_another_site_is_refused_like_a_missing_site(objects: Objects, north: Client):
    device, south = objects.by_site["north"]["device"], objects.by_site["south"]["site"]
    url = f"/admin/points/device/{device.pk}/change/"
    data = form_data(north.get(url))
    accepted = north.post(url, data)
    assert accepted.status_code == 302, accepted.context and accepted.context["errors"]  # the form as built is fine

    def refusal(site_id: int) -> list[str]:
        answered = north.post(url, {**data, "site": site_id})
        assert answered.status_code == 200  # the form again, with the error
        return answered.context["adminform"].form.errors["site"]

    assert (
        refusal(south.pk)
        == refusal(MISSING)
        == ["Select a valid choice. That choice is not one of the available choices."]
    )
    device.refresh_from_db()
    assert device.site_id == objects.by_site["north"]["site"].pk


def test_moving_a_point_to_another_sites_device_is_refused(objects: Objects, north: Client):
    point, south_plc = objects.by_site["north"]["point"], objects.by_site["south"]["device"]
    url = f"/admin/points/point/{point.pk}/change/"
    data = form_data(north.get(url))
    answered = north.post(url, {**data, "device": south_plc.pk})
    assert answered.status_code == 200 and "device" in answered.context["adminform"].form.errors
    point.refresh_from_db()
    assert point.device.name == "north_plc"
    # the same form, with a new description, is saved (the engineer does edit its own points)
    assert north.post(url, {**data, "description": "north corridor"}).status_code == 302
    point.refresh_from_db()
    assert point.description == "north corridor"


def test_a_rule_naming_another_sites_point_reads_as_an_unknown_name(objects: Objects, north: Client):
    rule = objects.by_site["north"]["rule"]
    url = f"/admin/logic/rule/{rule.pk}/change/"
    data = form_data(north.get(url))

    def errors(expression: str) -> str:
        answered = north.post(url, {**data, "expression": expression})
        assert answered.status_code == 200
        return " ".join(answered.context["adminform"].form.errors["expression"])

    assert errors("{south_temp} + 1") == errors("{nowhere_temp} + 1").replace("nowhere_temp", "south_temp")
    assert "site" not in errors("{south_temp} + 1")


def test_a_shared_calendar_is_seen_but_not_changed_by_a_restricted_engineer(objects: Objects, north: Client):
    url = f"/admin/schedules/calendar/{objects.holidays.pk}/change/"
    assert north.get(url).status_code == 200  # view only
    assert north.post(url, {"name": "mine"}).status_code == 403
    assert north.post(f"/admin/schedules/calendar/{objects.holidays.pk}/delete/", {"post": "yes"}).status_code == 403
    objects.holidays.refresh_from_db()
    assert objects.holidays.name == "holidays"
    # and a new calendar of theirs must name one of their sites
    made = north.post("/admin/schedules/calendar/add/", {"name": "nowhere", **empty_formset("entries")})
    assert made.status_code == 200 and "site" in made.context["adminform"].form.errors
    assert not Calendar.objects.filter(name="nowhere").exists()


def empty_formset(prefix: str) -> dict[str, str]:
    return {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"}


def test_a_restricted_engineer_makes_no_site_and_sees_no_site_access(objects: Objects, north: Client, wide: Client):
    assert north.get("/admin/sites/site/add/").status_code == 403
    assert wide.get("/admin/sites/site/add/").status_code == 200
    # who sees what is for administrators who see every site
    restricted_admin = staff(make_user("r_admin", "administrator"))
    restrict(User.objects.get(username="r_admin"), objects.by_site["north"]["site"])
    assert restricted_admin.get("/admin/sites/siteaccess/").status_code == 403
    index = restricted_admin.get("/admin/")
    assert b"/admin/sites/siteaccess/" not in index.content and b"/admin/tokens/tokenuse/" not in index.content
    full_admin = staff(make_user("ada_all", "administrator"))
    assert full_admin.get("/admin/sites/siteaccess/").status_code == 200


def test_an_administrator_grants_sites_on_the_users_page(sites: Sites):
    admin = staff(make_user("ada_all", "administrator"))
    user = make_user("newcomer", "viewer")
    url = f"/admin/auth/user/{user.pk}/change/"
    page = admin.get(url)
    assert page.status_code == 200
    inline = next(i for i in page.context["inline_admin_formsets"] if i.formset.prefix == "site_access")
    assert {site.name for site in inline.formset.empty_form.fields["sites"].queryset} >= {"north", "south"}
    data = {**form_data(page), "site_access-0-sites": [sites.north.pk]}  # "all sites" left unticked
    saved = admin.post(url, data)
    assert saved.status_code == 302, saved.context and saved.context["errors"]
    access = SiteAccess.objects.get(user=user)
    assert not access.all_sites
    assert set(access.grants.values_list("site__name", flat=True)) == {"north"}
    # shown again on the page, and changed from there
    again = form_data(admin.get(url))
    assert again["site_access-0-sites"] == [sites.north.pk]
    again["site_access-0-sites"] = [sites.south.pk]
    assert admin.post(url, again).status_code == 302
    assert set(access.grants.values_list("site__name", flat=True)) == {"south"}
    # the user's own fields are still edited as before (Django's UserAdmin kept)
    again = form_data(admin.get(url))
    assert admin.post(url, {**again, "first_name": "Nora"}).status_code == 302
    assert User.objects.get(pk=user.pk).first_name == "Nora"
    assert Site.objects.filter(name="south").exists()


def test_the_admins_token_page_shows_the_tokens_sites(sites: Sites):
    from bms.tokens.services import issue

    owner = make_user("script_owner", "engineer")
    token = issue(owner, "north script", "read", 30, by=owner, sites=["north"]).token
    admin = staff(make_user("ada_all", "administrator"))
    page = admin.get(f"/admin/tokens/apitoken/{token.pk}/change/")
    assert page.status_code == 200
    inline = next(i for i in page.context["inline_admin_formsets"] if i.formset.prefix == "sites")
    assert [form.instance.site.name for form in inline.formset.forms] == ["north"]
    assert not inline.has_add_permission and not inline.has_change_permission and not inline.has_delete_permission
    # a restricted caller sees its own tokens only: another user's by id is a missing id
    north_engineer = restrict(make_user("n_eng2", "engineer"), sites.north)
    client = staff(north_engineer)
    assert client.get("/admin/tokens/apitoken/").context["cl"].result_count == 0
    assert client.get(f"/admin/tokens/apitoken/{token.pk}/change/")["Location"] == "/admin/"


def test_a_device_left_without_a_site_gets_main_unless_the_caller_is_restricted(sites: Sites, north: Client, wide):
    def add(client: Client, name: str) -> Any:
        form = {"name": name, "driver": "modbus", "host": "127.0.0.1", "port": "502", "unit_id": "1"}
        form |= {"poll_interval": "1.0", "timeout": "2.0", "options": "{}", "site": "", **empty_formset("points")}
        return client.post("/admin/points/device/add/", form)

    assert add(wide, "anywhere_plc").status_code == 302
    assert Device.objects.get(name="anywhere_plc").site.name == "main"
    refused = add(north, "nowhere_plc")
    assert refused.status_code == 200 and refused.context["adminform"].form.errors["site"] == [
        "This field is required."
    ]
    assert not Device.objects.filter(name="nowhere_plc").exists()
