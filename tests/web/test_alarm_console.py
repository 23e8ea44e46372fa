"""The alarm console page and its action endpoint (the browser suite drives them against a real engine).

Here: who may see and do what, how a request is checked before it reaches
the engine, what the endpoint answers for each of the engine's outcomes, and
that a standby refuses an action with 503 and records it.
"""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from bms.alarms.actions import ActionResult, NotActive
from bms.control.models import AuditEntry
from bms.realtime.snapshot import EngineUnavailable
from bms.web import alarm_views

ACTION_URL = "/alarms/action"


@pytest.fixture
def performed(monkeypatch) -> list[dict]:
    """Stand in for the engine's side (``perform``): record each call and answer as the engine would."""
    calls: list[dict] = []

    def perform(action, alarms, user, *, comment="", seconds=None, until_normal=False):
        calls.append(
            {
                "action": action,
                "alarms": alarms,
                "user": user,
                "comment": comment,
                "seconds": seconds,
                "until_normal": until_normal,
            }
        )
        return ActionResult(
            done=[alarms[0]], unchanged=alarms[1:2], refused={name: "no such alarm" for name in alarms[2:]}
        )

    monkeypatch.setattr(alarm_views, "perform", perform)
    return calls


def post(client: Client, body: object):
    return client.post(ACTION_URL, json.dumps(body), content_type="application/json")


# ---- the page ----------------------------------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_log_in(client, db):
    for url in ("/alarms/", "/alarms/journal/", "/alarms/journal.csv"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    response = post(client, {"action": "acknowledge", "alarms": ["a"]})
    assert response.status_code == 302


def test_the_console_offers_the_actions_the_user_may_take(client, alarm_operator, viewer):
    client.force_login(alarm_operator)
    page = client.get("/alarms/").content.decode()
    assert 'data-can-acknowledge="1" data-can-shelve="1"' in page
    assert 'id="ack-selected"' in page and 'id="shelve-selected"' in page
    for value in ("attention", "unacked", "active", "shelved", "suppressed", "out_of_service", "all"):
        assert f'<option value="{value}">' in page
    # annunciated classes are filter choices; journal-only alarms never reach the console
    assert '<option value="critical">' in page and '<option value="journal-only">' not in page
    # shelving durations: the default (15 min) chosen, none beyond the site's maximum (8 h)
    assert '<option value="900" selected>15 minutes</option>' in page
    assert '<option value="28800">8 hours</option>' in page and 'value="until_normal"' in page
    assert 'data-max-seconds="28800"' in page  # "until it returns to normal" is capped there, not at 15 min

    client.force_login(viewer)
    page = client.get("/alarms/").content.decode()
    assert 'data-can-acknowledge="0" data-can-shelve="0"' in page
    assert 'id="ack-selected"' not in page and "need an operator" in page


def test_shelve_choices_stop_at_the_sites_maximum(settings):
    settings.BMS_ALARM_SHELVE_MAX_SECONDS = 2 * 3600
    assert alarm_views.shelve_choices() == [
        (900, "15 minutes"),
        (3600, "1 hour"),
        (7200, "2 hours (the longest allowed)"),
    ]


@pytest.mark.parametrize("url", ["/points/", "/alarms/", "/alarms/journal/", "/events/", "/redundancy/"])
def test_pages_carry_the_header_count_and_no_inline_script(client, alarm_operator, url):
    """Every page has the live count and the mute button; scripts come from static files only (CSP to come)."""
    client.force_login(alarm_operator)
    page = client.get(url).content.decode()
    assert 'id="alarm-counts"' in page and 'id="alarm-mute"' in page
    assert "bms/alarm-header.js" in page and "bms/livesocket.js" in page
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S)
    assert scripts, url
    for attributes, body in scripts:
        assert "src=" in attributes and not body.strip(), f"inline script on {url}: {attributes} {body[:80]}"
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", page), f"inline event handler on {url}"
    live_page = "1" if url in ("/points/", "/alarms/") else "0"
    assert f'data-live-page="{live_page}"' in page


def test_the_points_page_has_an_alarm_column(client, alarm_operator):
    from bms.points.models import Device, Point

    device = Device.objects.create(name="plant", host="127.0.0.1", port=1502)
    Point.objects.create(device=device, name="zone1_temp", address="ir:10", data_type="float32")
    client.force_login(alarm_operator)
    page = client.get("/points/").content.decode()
    assert "<th>Alarm</th>" in page and '<td class="alarm"></td>' in page


# ---- the action endpoint -------------------------------------------------------------------------------------------


def test_an_acknowledgement_reaches_the_engine_with_the_user_and_comment(client, alarm_operator, performed):
    client.force_login(alarm_operator)
    response = post(client, {"action": "acknowledge", "alarms": ["a", "b", "c", "a"], "comment": "  seen, on my way  "})
    assert response.status_code == 200
    assert response.json() == {
        "action": "acknowledge",
        "done": ["a"],
        "unchanged": ["b"],
        "refused": {"c": "no such alarm"},
    }
    assert performed == [
        {
            "action": "acknowledge",
            "alarms": ["a", "b", "c"],
            "user": "op",
            "comment": "seen, on my way",
            "seconds": None,
            "until_normal": False,
        }
    ]


def test_shelving_passes_its_duration_or_until_normal(client, alarm_operator, performed):
    client.force_login(alarm_operator)
    assert post(client, {"action": "shelve", "alarms": ["a"], "comment": "sensor", "seconds": 3600}).status_code == 200
    assert post(client, {"action": "shelve", "alarms": ["a"], "comment": "x", "until_normal": True}).status_code == 200
    assert post(client, {"action": "unshelve", "alarms": ["a"], "comment": "fixed"}).status_code == 200
    assert [(c["action"], c["seconds"], c["until_normal"]) for c in performed] == [
        ("shelve", 3600, False),
        ("shelve", None, True),
        ("unshelve", None, False),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "silence", "alarms": ["a"]}, "unknown action 'silence'"),
        ({"action": "acknowledge", "alarms": []}, "list of alarm names"),
        ({"action": "acknowledge", "alarms": "a"}, "list of alarm names"),
        ({"action": "acknowledge", "alarms": ["a", 3]}, "list of alarm names"),
        ({"action": "acknowledge", "alarms": ["a"] * 501}, "at most 500"),
        ({"action": "acknowledge", "alarms": ["a"], "comment": 5}, "must be text"),
        ({"action": "acknowledge", "alarms": ["a"], "comment": "x" * 1001}, "longer than 1000"),
        ({"action": "acknowledge", "alarms": ["a"], "seconds": 60}, "takes no duration"),
        ({"action": "shelve", "alarms": ["a"], "seconds": -1}, "above 0"),
        ({"action": "shelve", "alarms": ["a"], "seconds": True}, "above 0"),
        ({"action": "shelve", "alarms": ["a"], "until_normal": "yes"}, "true or false"),
        ([1, 2], "JSON object"),
    ],
)
def test_malformed_actions_are_400_and_never_reach_the_engine(client, alarm_operator, performed, body, message):
    client.force_login(alarm_operator)
    response = post(client, body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid" and message in response.json()["message"]
    assert not performed


def test_a_body_that_is_not_json_is_400(client, alarm_operator, performed):
    client.force_login(alarm_operator)
    response = client.post(ACTION_URL, "acknowledge=a", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and "not JSON" in response.json()["message"]
    assert not performed


def test_a_user_without_the_permission_is_refused(client, viewer, performed):
    client.force_login(viewer)
    for action, verb in (("acknowledge", "acknowledge alarms"), ("shelve", "shelve"), ("unshelve", "shelve")):
        response = post(client, {"action": action, "alarms": ["a"], "comment": "c"})
        assert response.status_code == 403 and verb in response.json()["message"]
    assert not performed


def test_acknowledging_needs_only_the_acknowledge_permission(client, db, performed):
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("acker", password="pw-123456")
    user.user_permissions.add(Permission.objects.get(codename="acknowledge_alarm"))
    client.force_login(user)
    assert post(client, {"action": "acknowledge", "alarms": ["a"]}).status_code == 200
    assert post(client, {"action": "shelve", "alarms": ["a"], "comment": "c"}).status_code == 403


def test_a_post_without_the_csrf_token_is_refused(alarm_operator, performed):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alarm_operator)
    assert post(client, {"action": "acknowledge", "alarms": ["a"]}).status_code == 403
    assert not performed


def test_get_is_not_an_action(client, alarm_operator, performed):
    client.force_login(alarm_operator)
    assert client.get(ACTION_URL).status_code == 405


@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        (EngineUnavailable("no answer"), "engine_unavailable", "may or may not have been applied"),
        (NotActive("standby"), "not_active", "no longer the active one"),
    ],
)
def test_an_engine_that_cannot_act_is_a_503_that_says_so(client, alarm_operator, monkeypatch, error, code, words):
    def perform(*args, **kwargs):
        raise error

    monkeypatch.setattr(alarm_views, "perform", perform)
    client.force_login(alarm_operator)
    response = post(client, {"action": "acknowledge", "alarms": ["a"]})
    assert response.status_code == 503
    assert response.json()["error"] == code and words in response.json()["message"]


def test_the_engines_own_refusal_of_the_request_is_a_400(client, alarm_operator, monkeypatch):
    def perform(*args, **kwargs):
        raise ValueError("at most 10000 alarms per action")

    monkeypatch.setattr(alarm_views, "perform", perform)
    client.force_login(alarm_operator)
    response = post(client, {"action": "acknowledge", "alarms": ["a"]})
    assert response.status_code == 400 and "10000" in response.json()["message"]


# ---- on a standby --------------------------------------------------------------------------------------------------


def test_a_standby_refuses_every_action_with_503_and_records_it(client, as_backup, alarm_operator, performed):
    as_backup.set_role("standby", epoch=5)
    client.force_login(alarm_operator)
    page = client.get("/alarms/").content.decode()
    assert 'id="alarm-read-only"' in page and 'href="http://main.example:8000/alarms/"' in page
    for action in ("acknowledge", "shelve", "unshelve"):
        response = post(client, {"action": action, "alarms": ["a"], "comment": "c"})
        assert response.status_code == 503
        assert 'id="refused-message"' in response.content.decode()  # what the console shows
    assert not performed
    refusals = AuditEntry.objects.filter(action="refused.standby", target=ACTION_URL)
    assert refusals.count() == 3
    assert {entry.username for entry in refusals} == {"op"}
    assert all(entry.detail["role"] == "standby" and entry.detail["epoch"] == 5 for entry in refusals)


def test_the_active_node_of_a_pair_acts(client, as_main, alarm_operator, performed):
    as_main.set_role("active")
    client.force_login(alarm_operator)
    assert 'id="alarm-read-only"' not in client.get("/alarms/").content.decode()
    assert post(client, {"action": "acknowledge", "alarms": ["a"]}).status_code == 200
    assert len(performed) == 1
