"""The points page in a real headless Chromium against a real node and the simulated building.

Live values arrive over the websocket without reloading the page, the write
dialog goes through the JSON API to the device, and the viewer cannot write.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Page, expect

from tests.support.processes import ROOT
from tests.system.test_live_websocket import read_device_register, write_device_register

pytestmark = pytest.mark.browser

PLACEHOLDER = "\u2013"  # the en dash live.js shows before a value arrives
SCREENSHOT = ROOT / "var" / "test-logs" / "points-page.png"
ZONE1_SETPOINT_REGISTER = 0  # hr:0, float32
DEFAULT_SETPOINT = 21.0


@pytest.fixture
def new_page(chromium):
    """Pages in fresh browser contexts (own cookies), closed after the test."""
    contexts = []

    def make() -> Page:
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def run_async(function, *args):
    """Run a coroutine function to completion on a worker thread.

    Playwright's sync API keeps an event loop running on this thread, so
    ``asyncio.run`` cannot be called here directly.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(function(*args))).result(timeout=15)


def device_setpoint(simulator) -> float:
    """zone1_setpoint as the device itself holds it, read over Modbus."""
    return run_async(read_device_register, simulator.port, ZONE1_SETPOINT_REGISTER)


@pytest.fixture
def restore_setpoint(simulator):
    """Whatever happens in the test, leave zone1_setpoint at its default at the device."""
    yield
    if device_setpoint(simulator) != DEFAULT_SETPOINT:
        run_async(write_device_register, simulator.port, ZONE1_SETPOINT_REGISTER, DEFAULT_SETPOINT)


def log_in(page: Page, node, username: str, password: str) -> None:
    page.goto(f"{node.base_url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/points/$"))


def row(page: Page, point: str):
    return page.locator(f'tr[data-point="{point}"]')


def value_cell(page: Page, point: str):
    return row(page, point).locator("td.value")


def wait_live(page: Page) -> None:
    """The websocket is connected and the snapshot has been rendered."""
    expect(page.locator("#live-status")).to_have_text("connected")
    expect(page.locator("#live-seq")).to_have_text(re.compile(r"^\d+$"))
    expect(value_cell(page, "zone1_temp")).to_have_attribute("data-raw", re.compile(r"^-?\d"))


def raw_value(page: Page, point: str) -> float:
    return float(value_cell(page, point).get_attribute("data-raw"))


def open_write_dialog(page: Page, point: str) -> None:
    page.locator(f'button.write[data-point="{point}"]').click()
    expect(page.locator("#write-dialog")).to_be_visible()
    expect(page.locator("#write-point")).to_have_text(point)


def submit_write(page: Page, text: str) -> None:
    page.fill("#write-value", text)
    page.locator("#write-submit").click()
    # the result leaves "Sending…" once the API has answered
    expect(page.locator("#write-result")).not_to_have_text(re.compile(r"^(|Sending…)$"))


def test_live_values_update_without_reload(node, new_page):
    page = new_page()
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    log_in(page, node, "demo", "demo")
    wait_live(page)
    expect(row(page, "zone1_temp").locator(".quality")).to_have_text("good")

    cell = value_cell(page, "zone1_temp")
    first = cell.text_content()
    assert re.fullmatch(r"-?\d+\.\d\d", first), first
    navigations_before = len(navigations)
    page.evaluate("window.__bmsNoReload = 'still-here'")

    page.wait_for_function(
        """([first]) => {
            const text = document.querySelector('tr[data-point="zone1_temp"] td.value').textContent;
            return /^-?\\d+\\.\\d\\d$/.test(text) && text !== first;
        }""",
        arg=[first],
        timeout=15_000,
    )
    changed = cell.text_content()
    assert changed != first
    assert page.evaluate("window.__bmsNoReload") == "still-here", "the page was reloaded"
    assert len(navigations) == navigations_before, navigations
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    expect(row(page, "zone1_temp").locator(".quality")).to_have_text("good")
    expect(page.locator("#live-status")).to_have_text("connected")


def test_write_setpoint_through_dialog_moves_the_zone(node, simulator, new_page, restore_setpoint):
    page = new_page()
    log_in(page, node, "demo", "demo")
    wait_live(page)

    open_write_dialog(page, "zone1_setpoint")
    expect(page.locator("#write-range")).to_contain_text("28")
    temp_at_write = raw_value(page, "zone1_temp")
    submit_write(page, "27")
    result = page.locator("#write-result")
    expect(result).to_have_text(re.compile(r"^Written: 27\.00 degC"))
    expect(result).to_have_class("ok")

    assert device_setpoint(simulator) == 27.0
    setpoint_cell = value_cell(page, "zone1_setpoint")
    expect(setpoint_cell).to_have_attribute("data-raw", "27")
    expect(setpoint_cell).to_have_text("27.00")

    page.wait_for_function(
        """([limit]) => {
            const raw = document.querySelector('tr[data-point="zone1_temp"] td.value').dataset.raw;
            return raw !== undefined && Number(JSON.parse(raw)) > limit;
        }""",
        arg=[temp_at_write + 0.3],
        timeout=20_000,
    )
    assert raw_value(page, "zone1_temp") > temp_at_write + 0.3

    # put it back through the same dialog, still open
    submit_write(page, "21")
    expect(result).to_have_text(re.compile(r"^Written: 21"))
    expect(result).to_have_class("ok")
    assert device_setpoint(simulator) == DEFAULT_SETPOINT
    expect(setpoint_cell).to_have_attribute("data-raw", "21")


def test_out_of_range_write_is_refused(node, simulator, new_page, restore_setpoint):
    page = new_page()
    log_in(page, node, "demo", "demo")
    wait_live(page)
    before = device_setpoint(simulator)
    shown_before = value_cell(page, "zone1_setpoint").get_attribute("data-raw")

    open_write_dialog(page, "zone1_setpoint")
    submit_write(page, "99")
    result = page.locator("#write-result")
    expect(result).to_have_class("error")
    expect(result).to_contain_text("highest allowed value 28")
    assert "Written" not in result.text_content()

    assert device_setpoint(simulator) == before
    expect(value_cell(page, "zone1_setpoint")).to_have_attribute("data-raw", shown_before)


def test_viewer_sees_values_but_cannot_write(node, new_page):
    page = new_page()
    log_in(page, node, "viewer", "viewer-pass-1")
    wait_live(page)
    expect(row(page, "zone1_setpoint")).to_be_visible()
    expect(value_cell(page, "zone1_setpoint")).to_have_attribute("data-raw", re.compile(r"^\d"))
    expect(row(page, "meter_energy").locator(".quality")).to_have_text("good")
    expect(page.locator("button.write")).to_have_count(0)
    expect(page.get_by_role("button", name="Write…")).to_have_count(0)


def test_demo_sees_write_buttons_only_on_writable_points(node, new_page):
    page = new_page()
    log_in(page, node, "demo", "demo")
    wait_live(page)
    expect(page.locator('button.write[data-point="zone1_setpoint"]')).to_be_visible()
    expect(page.locator('button.write[data-point="ahu1_fan_cmd"]')).to_be_visible()
    expect(page.locator('button.write[data-point="zone1_temp"]')).to_have_count(0)
    expect(page.locator('button.write[data-point="meter_energy"]')).to_have_count(0)


def test_screenshot_of_live_points_page(node, new_page):
    page = new_page()
    log_in(page, node, "demo", "demo")
    wait_live(page)
    for point in ("zone1_temp", "zone1_setpoint", "meter_energy", "ahu1_fan_cmd"):
        expect(row(page, point).locator(".quality")).to_have_text("good")
        expect(value_cell(page, point)).not_to_have_text(PLACEHOLDER)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000


# --- formatting and dialog details ------------------------------------------------------------


def test_whole_number_floats_show_two_decimals(node, new_page):
    page = new_page()
    log_in(page, node, "demo", "demo")
    wait_live(page)
    expect(value_cell(page, "zone1_setpoint")).to_have_attribute("data-raw", "21")
    expect(value_cell(page, "zone1_setpoint")).to_have_text("21.00", timeout=2_000)


@pytest.mark.parametrize(
    ("point", "shown", "hidden"),
    [("zone1_setpoint", "#write-value", "#write-bool"), ("ahu1_fan_cmd", "#write-bool", "#write-value")],
)
def test_write_dialog_shows_only_the_input_for_the_point_type(node, new_page, point, shown, hidden):
    page = new_page()
    log_in(page, node, "demo", "demo")
    wait_live(page)
    open_write_dialog(page, point)
    expect(page.locator(shown)).to_be_visible()
    expect(page.locator(hidden)).to_be_hidden(timeout=2_000)
