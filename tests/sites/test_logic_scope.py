"""Logic rules belong to sites: a north user meets south's rules exactly as if they did not exist.

Each south rule is tried by id through every route (read, change, delete,
enable, disable) by each north-restricted role and by a token narrowed to
north, and must be answered exactly like an id that does not exist; lists and
the live view leave it out; a south point named in a rule reads as an unknown
point; a rule of one site reading or writing another's point is refused with
the model's message; an existing rule lands in the default site on upgrade.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from bms.logic.models import Rule
from bms.sites.models import DEFAULT_SITE, Site
from tests.sites.conftest import JsonClient, Sites, make_user, restrict
from tests.sites.test_schedules_scope import MISSING, answer, call, migrate_to, north_token_client

RULES = "/api/v1/rules/"


@pytest.fixture
def rules(sites: Sites) -> dict[str, Rule]:
    return {
        site.name: Rule.objects.create(
            name=f"{site.name}_rule",
            expression=f"{{{site.name}_temp}} + 1",
            output=f"{site.name}_setpoint",
            priority=12,
            site=site,
        )
        for site in (sites.north, sites.south)
    }


@pytest.fixture(params=["viewer", "operator", "engineer", "administrator", "token"])
def north_client(request: pytest.FixtureRequest, north_users: dict[str, User], everywhere: User, sites: Sites):
    """Each north-restricted role, and a token narrowed to north whose user sees every site."""
    if request.param == "token":
        return north_token_client(everywhere, sites)
    return JsonClient(north_users[request.param])


ROUTES = [
    ("get", RULES + "{}/", None),
    ("put", RULES + "{}/", {"name": "taken", "expression": "1", "output": "north_setpoint"}),
    ("patch", RULES + "{}/", {"description": "mine now"}),
    ("patch", RULES + "{}/", {"expression": "{{"}),
    ("delete", RULES + "{}/", None),
    ("post", RULES + "{}/enable", None),
    ("post", RULES + "{}/disable", None),
]


def test_every_south_rule_by_id_answers_like_one_that_does_not_exist(north_client, rules):
    south = rules["south"]
    for method, path, body in ROUTES:
        theirs = call(north_client, method, path.format(south.pk), body)
        missing = call(north_client, method, path.format(MISSING), body)
        assert answer(theirs, south.pk) == answer(missing, MISSING), (method, path)
        assert theirs.status_code == 404, (method, path, theirs.status_code)
    kept = Rule.objects.get(pk=south.pk)
    assert (kept.name, kept.description, kept.enabled) == ("south_rule", "", True)


def test_lists_and_the_live_view_leave_other_sites_out(north_client, rules):
    listed = north_client.get(RULES).json()
    assert (listed["count"], [row["name"] for row in listed["results"]]) == (1, ["north_rule"])
    assert listed["results"][0]["site"] == "north"
    live = north_client.get(f"{RULES}live").json()
    assert [row["name"] for row in live["rules"]] == ["north_rule"]
    assert north_client.get(f"{RULES}live", {"rule": "south_rule"}).json()["rules"] == []


def test_an_unrestricted_caller_sees_every_rule(everywhere, rules):
    client = JsonClient(everywhere)
    assert [row["name"] for row in client.get(RULES).json()["results"]] == ["north_rule", "south_rule"]
    assert client.get(f"{RULES}{rules['south'].pk}/").json()["site"] == "south"


def refusal(response: Any, field: str) -> str:
    assert response.status_code == 400, response.json()
    return response.json()["fields"][field][0]


def test_a_south_point_or_site_in_a_rule_reads_as_an_unknown_name(north_users, rules):
    engineer = JsonClient(north_users["engineer"])
    base = {"name": "new_rule", "expression": "{north_temp} * 2", "output": "north_setpoint", "site": "north"}
    south_in = refusal(engineer.post(RULES, {**base, "expression": "{south_temp} * 2"}), "expression")
    nowhere_in = refusal(engineer.post(RULES, {**base, "expression": "{nowhere_temp} * 2"}), "expression")
    assert south_in.replace("south_temp", "X") == nowhere_in.replace("nowhere_temp", "X")
    south_out = refusal(engineer.post(RULES, {**base, "output": "south_setpoint"}), "output")
    nowhere_out = refusal(engineer.post(RULES, {**base, "output": "nowhere_setpoint"}), "output")
    assert south_out.replace("south_setpoint", "X") == nowhere_out.replace("nowhere_setpoint", "X")
    south_site = refusal(engineer.post(RULES, {**base, "site": "south"}), "site")
    assert south_site == refusal(engineer.post(RULES, {**base, "site": "nowhere"}), "site").replace("nowhere", "south")
    assert not Rule.objects.filter(name="new_rule").exists()
    made = engineer.post(RULES, {**base, "priority": 11})
    assert made.status_code == 201, made.json()
    assert Rule.objects.get(name="new_rule").site.name == "north"
    # switching its own rule works (checked again with the caller's points)
    assert engineer.post(f"{RULES}{rules['north'].pk}/disable").json()["enabled"] is False
    assert engineer.post(f"{RULES}{rules['north'].pk}/enable").json()["enabled"] is True


def test_a_rule_made_without_a_site_gets_the_default_site_only_when_the_caller_sees_it(north_users, everywhere, sites):
    main = Site.objects.get_or_create(name=DEFAULT_SITE)[0]
    body = {"name": "plain", "expression": "1", "output": "nothing"}
    refused = JsonClient(north_users["engineer"]).post(RULES, body)
    assert refused.status_code == 400
    assert refused.json()["fields"] == {"site": ["This field is required."]}
    both = restrict(make_user("main_and_north", "engineer"), main, sites.north)
    # defaulted to main, the rule is then checked there: north's point is another site's
    response = JsonClient(both).post(RULES, {**body, "output": "north_setpoint"})
    assert "north_setpoint is a point of site north" in refusal(response, "output")
    assert "rule plain is of site main" in refusal(response, "output")
    made = JsonClient(everywhere).post(RULES, {**body, "output": "north_setpoint", "site": "north"})
    assert made.status_code == 201 and made.json()["site"] == "north"


def test_a_rule_reading_or_writing_another_sites_point_is_refused_naming_it(everywhere, rules):
    client = JsonClient(everywhere)
    base = {"name": "mixed", "expression": "{north_temp}", "output": "north_setpoint", "site": "north", "priority": 9}
    read = refusal(client.post(RULES, {**base, "expression": "{south_temp}"}), "expression")
    assert "south_temp is a point of site south; rule mixed is of site north" in read
    wrote = refusal(client.post(RULES, {**base, "output": "south_setpoint"}), "output")
    assert "south_setpoint is a point of site south" in wrote
    moved = refusal(client.patch(f"{RULES}{rules['north'].pk}/", {"site": "south"}), "expression")
    assert "north_temp is a point of site north" in moved
    assert Rule.objects.get(pk=rules["north"].pk).site.name == "north"
    with pytest.raises(Exception, match="a rule reads and writes only points of its own site"):
        Rule.objects.create(name="code", expression="{south_temp}", output="north_setpoint", site=rules["north"].site)


def test_the_logic_page_shows_only_the_callers_rules(north_users, everywhere, rules):
    client = Client()
    client.force_login(north_users["engineer"])
    html = client.get("/logic/").content.decode()
    assert "north_rule" in html and "North wing" in html
    assert "south" not in html.lower()
    client.force_login(everywhere)
    assert "south_rule" in client.get("/logic/").content.decode()


@pytest.mark.django_db
def test_the_migration_puts_existing_rules_in_the_default_site():
    """Run inside the test's transaction (PostgreSQL's DDL is transactional): the schema comes back at rollback."""
    Site.objects.filter(name=DEFAULT_SITE).delete()  # the migration makes it when it has rows to move
    executor = MigrationExecutor(connection)
    old = migrate_to(executor, ("logic", "0001_initial"))
    legacy = old.get_model("logic", "Rule")
    assert "site" not in {field.name for field in legacy._meta.get_fields()}, "the schema before sites"
    legacy.objects.create(name="legacy", expression="1", output="nothing")
    migrate_to(executor)
    assert Rule.objects.get(name="legacy").site.name == DEFAULT_SITE
