"""The schedule editor and the priority panel in a real headless Chromium against a real node and the simulator.

An engineer creates a weekly schedule in the week grid, sees the server's
next transitions, edits a time and sees them change; a bad entry is refused
with the message next to the week and nothing typed is lost. On the points
page the same user overrides a setpoint for one hour (slot 8 wins, with its
expiry, and the device holds the value) and relinquishes it (slot 8 empty).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_points_page import (
    DEFAULT_SETPOINT,
    PLACEHOLDER,
    ZONE1_SETPOINT_REGISTER,
    device_setpoint,
    run_async,
    wait_live,
)
from tests.support.processes import ROOT
from tests.system.test_live_websocket import write_device_register

pytestmark = pytest.mark.browser

ENGINEER, PASSWORD = "eng", "eng-pass-123"
SCREENSHOT = ROOT / "var" / "test-logs" / "schedule-editor.png"


@pytest.fixture(scope="module")
def engineer(node) -> str:
    """An engineer (edits schedules, may write points) in the node's database."""
    node.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import Group, User\n"
        f"user, made = User.objects.get_or_create(username={ENGINEER!r})\n"
        f"user.set_password({PASSWORD!r}); user.save()\n"
        "user.groups.add(Group.objects.get(name='engineer'))",
    )
    return ENGINEER


@pytest.fixture
def page(chromium, node, engineer):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(f"{node.base_url}/login/")
    page.fill("input[name=username]", engineer)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/points/$"))
    yield page
    context.close()


@pytest.fixture
def restore_setpoint(simulator):
    """Leave zone1_setpoint at its default at the device, whatever the test did."""
    yield
    if device_setpoint(simulator) != DEFAULT_SETPOINT:
        run_async(write_device_register, simulator.port, ZONE1_SETPOINT_REGISTER, DEFAULT_SETPOINT)


def day(page: Page, name: str):
    return page.locator(f'.week-day[data-day="{name}"]')


def add_entry(page: Page, weekday: str, time: str, value: str) -> None:
    column = day(page, weekday)
    column.locator("button.tv-add").click()
    row = column.locator(".tv-row").last
    row.locator(".tv-time").fill(time)
    row.locator(".tv-value").fill(value)


def local_times(page: Page) -> list[str]:
    return page.locator("#transition-table td.local").all_text_contents()


def test_edit_a_weekly_schedule_and_see_the_next_transitions_change(node, page):
    page.click("text=Schedules")
    expect(page).to_have_url(re.compile(r"/schedules/$"))
    page.click("#schedule-new")
    page.fill("#f-name", "ui_office")
    page.select_option("#f-value_type", "real")
    page.fill("#f-time_zone", "Europe/Berlin")
    page.locator("#f-default_value .tv-value").fill("17")
    add_entry(page, "monday", "07:00", "21")
    add_entry(page, "monday", "18:00", "17")
    page.click("#schedule-save")

    # saved: the editor of the new schedule, with the transitions the server computed
    expect(page).to_have_url(re.compile(r"/schedules/\d+/\?saved=1$"))
    expect(page.locator("#schedule-status")).to_have_text("Saved.")
    expect(page.locator("#transition-table tbody tr")).to_have_count(10)
    expect(page.locator("#transition-zone")).to_have_text("Europe/Berlin")
    times = local_times(page)
    assert all(re.match(r"^Mon \d{4}-\d\d-\d\d (07|18):00:00 \(UTC\+0[12]:00\)$", text) for text in times), times
    values = page.locator("#transition-table td.value").all_text_contents()
    assert set(values) == {"21", "17"}, values
    expect(page.locator("#in-force")).to_contain_text("In force now:")

    # a bad entry: refused next to the week, and what was typed stays
    add_entry(page, "monday", "05:00", "19")
    page.click("#schedule-save")
    expect(page.locator("#schedule-status")).to_contain_text("Not saved")
    expect(page.locator('[data-error-for="weekly"]')).to_contain_text("monday: 05:00 comes after 18:00")
    expect(day(page, "monday").locator(".tv-row")).to_have_count(3)
    day(page, "monday").locator(".tv-row").last.locator(".tv-remove").click()

    # the edit: start at 06:30 instead of 07:00, and the transitions follow
    day(page, "monday").locator(".tv-row").first.locator(".tv-time").fill("06:30")
    page.click("#schedule-save")
    expect(page.locator("#schedule-status")).to_contain_text("Saved at")
    page.wait_for_function(
        """() => {
            const cells = [...document.querySelectorAll('#transition-table td.local')].map((td) => td.textContent);
            const has = (time) => cells.some((text) => text.includes(' ' + time + ' '));
            return cells.length === 10 && has('06:30:00') && !has('07:00:00');
        }"""
    )
    # an exception on the next Monday (Berlin): 15 all day, from the first event priority; the transitions show it
    today = datetime.now(ZoneInfo("Europe/Berlin")).date()
    monday = today + timedelta(days=7 - today.weekday())
    page.click("#exception-add")
    box = page.locator("#exceptions .exception").last
    expect(box.locator('[data-for="calendar"]')).to_be_hidden()  # a date exception shows its date only
    box.locator('[data-name="date"]').fill(monday.isoformat())
    box.locator('[data-name="event_priority"]').select_option("1")
    box.locator('[data-name="description"]').fill("maintenance")
    box.locator(".tv-row .tv-value").fill("15")
    page.click("#schedule-save")
    expect(page.locator("#schedule-status")).to_contain_text("Saved at")
    expect(page.locator("#transition-table td.source", has_text="exception: maintenance")).to_have_count(1)
    special = page.locator("#transition-table tr", has_text="exception: maintenance")
    expect(special.locator("td.value")).to_have_text("15")
    expect(special).to_have_attribute("data-identity", re.compile(rf":{monday:%Y%m%d}T000000:ex\d+$"))
    expect(page.locator("#exceptions .exception legend")).to_have_text(f"Exception: {monday.isoformat()}")

    # what the server stored is what the page shows
    stored = page.evaluate(
        """async () => {
            const rows = await (await fetch('/api/v1/schedules/?limit=500')).json();
            return rows.results.find((s) => s.name === 'ui_office');
        }"""
    )
    assert stored["weekly"] == {"monday": [{"time": "06:30", "value": 21.0}, {"time": "18:00", "value": 17.0}]}
    [exception] = stored["exceptions"]
    assert (exception["kind"], exception["date"], exception["event_priority"]) == ("date", monday.isoformat(), 1)
    assert exception["time_values"] == [{"time": "00:00", "value": 15.0}]
    assert stored["time_zone"] == "Europe/Berlin"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def slot(page: Page, priority: int):
    return page.locator(f'#priority-slots tr[data-priority="{priority}"]')


def test_override_a_point_for_one_hour_and_relinquish_it(node, simulator, page, restore_setpoint):
    wait_live(page)
    page.locator('button.priority[data-point="zone1_setpoint"]').click()
    expect(page.locator("#priority-dialog")).to_be_visible()
    expect(page.locator("#priority-point")).to_have_text("zone1_setpoint")
    expect(page.locator("#priority-slots tbody tr")).to_have_count(16)
    expect(page.locator("#priority-duration")).to_have_value("3600")  # one hour is the default

    page.fill("#priority-value", "23.5")
    page.click("#priority-override-submit")
    expect(page.locator("#priority-result")).to_contain_text("priority 8 set")
    expect(page.locator("#priority-result")).to_have_class("ok")
    expect(slot(page, 8)).to_have_class(re.compile(r"\bwinner\b"))
    expect(slot(page, 8).locator("td.value")).to_have_text("23.50")
    expect(slot(page, 8).locator("td.until")).not_to_have_text("")
    expect(page.locator("#priority-summary")).to_have_text(re.compile(r"^In control: priority 8, 23\.50 degC"))
    assert device_setpoint(simulator) == 23.5

    array = page.evaluate("async () => (await fetch('/api/v1/points/zone1_setpoint/priority-array')).json()")
    manual = array["slots"][7]
    assert manual["source"] == "api" and manual["user"] == ENGINEER
    held = datetime.fromisoformat(manual["expires_at"]) - datetime.fromisoformat(manual["set_at"])
    assert 3590 <= held.total_seconds() <= 3610, held
    page.screenshot(path=str(SCREENSHOT.with_name("priority-panel.png")))

    page.click("#priority-relinquish")
    expect(page.locator("#priority-result")).to_contain_text("priority 8 relinquished")
    expect(slot(page, 8)).to_have_class(re.compile(r"\bempty\b"))
    expect(slot(page, 8)).not_to_have_class(re.compile(r"\bwinner\b"))
    expect(slot(page, 8).locator("td.value")).to_have_text(PLACEHOLDER)
    expect(page.locator("#priority-summary")).not_to_have_text(re.compile(r"priority 8"))
    array = page.evaluate("async () => (await fetch('/api/v1/points/zone1_setpoint/priority-array')).json()")
    assert array["slots"][7]["value"] is None and array["effective_priority"] != 8


def test_logic_page_shows_a_rule_live_and_switches_it(node, page):
    """A rule the engine runs: its state and commanded output arrive live; Disable and Enable go through the API."""
    node.manage(
        "shell",
        "-c",
        "from bms.logic.models import Rule\n"
        "Rule.objects.filter(name='ui_const').delete()\n"
        # a constant at the default setpoint, below the manual slot: harmless to the other tests' points
        "Rule.objects.create(name='ui_const', expression='21', output='zone4_setpoint', priority=15)",
    )
    page.goto(f"{node.base_url}/logic/")
    row = page.locator('tr[data-rule="ui_const"]')
    expect(row).to_be_visible()
    expect(page.locator("#live-status")).to_have_text("connected")
    # the engine reloads the configuration, runs the rule and publishes its state: it reaches the page live
    expect(row.locator(".state .quality")).to_have_text("good", timeout=20_000)
    expect(row.locator(".writes .io-commanded")).to_have_text("21")
    expect(row.locator(".writes .io-value")).to_have_text("21")

    row.get_by_role("button", name="Disable").click()
    expect(page.locator("#logic-notice")).to_have_text("ui_const disabled; the engine reloads it.")
    expect(row.locator(".enabled-text")).to_have_text("no")
    row.get_by_role("button", name="Enable").click()
    expect(page.locator("#logic-notice")).to_have_text("ui_const enabled; the engine reloads it.")
    expect(row.locator(".enabled-text")).to_have_text("yes")
    page.screenshot(path=str(SCREENSHOT.with_name("logic-page.png")), full_page=True)
