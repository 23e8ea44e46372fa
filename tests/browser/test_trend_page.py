"""The trend page in a real headless Chromium against a real node: two points drawn from stored history,
zooming in fetches finer data, a live value from the simulated device appears without a reload."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_points_page import DEFAULT_SETPOINT, ZONE1_SETPOINT_REGISTER, log_in, run_async
from tests.support.processes import ROOT
from tests.system.test_live_websocket import write_device_register

pytestmark = pytest.mark.browser
POINTS = ("zone1_temp", "zone1_setpoint")
HISTORY_DAYS = 60
SCREENSHOT = ROOT / "var" / "test-logs" / "trend-page.png"

#: run in the node's own Django (manage.py shell): 60 days of 10-minute samples through the trend writer's
#: function (binary COPY), then the roll-up passes until every hour and day is computed
LOAD_HISTORY = """
from datetime import timedelta
from django.utils import timezone
from bms.points.models import Point
from bms.trends import rollups, storage
end = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=2)
rows = []
for index, name in enumerate({points!r}):
    point = Point.objects.get(name=name)
    for step in range({days} * 144):
        at = end - timedelta(minutes=10 * step)
        rows.append((point.pk, at, 15.0 + index * 5 + (step % 144) / 24, 0))
storage.write_samples(rows)
while rollups.run(limit=5000)["hours"]:
    pass
print(len(rows))
"""


@pytest.fixture(scope="module")
def history(node) -> int:
    """The stored history of the two points in the node's database; how many samples."""
    output = node.manage("shell", "-c", LOAD_HISTORY.format(points=POINTS, days=HISTORY_DAYS))
    return int(output.strip().splitlines()[-1])


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


@pytest.fixture
def restore_device_setpoint(simulator):
    yield
    run_async(write_device_register, simulator.port, ZONE1_SETPOINT_REGISTER, DEFAULT_SETPOINT)


def trend_answer(response) -> dict:
    assert response.ok, response.text()
    return json.loads(response.text())


def test_trend_page_draws_zooms_to_finer_data_and_shows_live_values(
    node, simulator, history, new_page, restore_device_setpoint
):
    assert history == 2 * HISTORY_DAYS * 144
    page: Page = new_page()
    log_in(page, node, "demo", "demo")
    start = (datetime.now(UTC) - timedelta(days=HISTORY_DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")

    # the points page links to each point's trend
    link = page.locator('tr[data-point="zone1_temp"] a.trend-link')
    expect(link).to_have_attribute("href", "/trends/?points=zone1_temp")

    with page.expect_response(lambda r: "/api/v1/trends/?" in r.url) as first:
        page.goto(f"{node.base_url}/trends/?points={','.join(POINTS)}&start={start}")
    overview = trend_answer(first.value)
    assert overview["resolution"] == "hour", overview["resolution"]
    assert [s["point"] for s in overview["series"]] == list(POINTS)
    assert all(len(s["t"]) > 100 for s in overview["series"])
    expect(page.locator("#trend-resolution")).to_have_attribute("data-resolution", "hour")
    page.screenshot(path=str(SCREENSHOT))  # for a person to look at after a run
    expect(page.locator("#trend-chart canvas")).to_have_count(1)
    drawn = page.evaluate(
        "() => window.bmsTrend.plot.data.slice(1).map((column) => column.filter((v) => v != null).length)"
    )
    assert len(drawn) == 6 and drawn[0] > 100 and drawn[3] > 100, drawn  # avg, min, max of each point
    print(f"first draw {page.evaluate('window.bmsTrend.firstDrawMs'):.0f} ms after navigation start")

    # zoom: drag across a twentieth of the chart
    box = page.locator("#trend-chart .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    with page.expect_response(lambda r: "/api/v1/trends/?" in r.url) as second:
        page.mouse.move(box["x"] + box["width"] * 0.40, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.42, y, steps=5)
        page.mouse.move(box["x"] + box["width"] * 0.45, y, steps=5)
        page.mouse.up()
    zoomed = trend_answer(second.value)
    assert zoomed["resolution"] == "raw", zoomed
    assert zoomed["bucket_seconds"] < overview["bucket_seconds"]
    assert all(len(s["t"]) > 10 for s in zoomed["series"])
    expect(page.locator("#trend-resolution")).to_have_attribute("data-resolution", "raw")
    query = second.value.request.url
    assert re.search(r"start=[^&]+&end=", query)

    # the CSV of the visible range, streamed, its rows counted on the page: the same raw samples
    with page.expect_download() as download:
        page.locator("#trend-export").click()
    expect(page.locator("#trend-export-progress")).to_have_text(re.compile(r"rows exported$"))
    exported = sum(len(s["t"]) for s in zoomed["series"])
    expect(page.locator("#trend-export-progress")).to_have_attribute("data-rows", str(exported))
    assert download.value.suggested_filename.endswith(".csv")

    # back to "now", then a live value from the device
    with page.expect_response(lambda r: "/api/v1/trends/?" in r.url):
        page.locator('button[data-range="3600"]').click()
    expect(page.locator("#live-status")).to_have_text("connected")
    expect(page.locator('tr[data-point="zone1_setpoint"] .live-value')).to_have_text("21.00")
    page.evaluate("window.__bmsNoReload = 'still-here'")
    run_async(write_device_register, simulator.port, ZONE1_SETPOINT_REGISTER, 24.5)
    expect(page.locator('tr[data-point="zone1_setpoint"] .live-value')).to_have_text("24.50", timeout=15_000)
    page.wait_for_function(
        """() => {
            const points = window.bmsTrend.live.get("zone1_setpoint");
            const data = window.bmsTrend.plot.data;
            const drawn = data[4].filter((v) => v !== undefined && v !== null);  // zone1_setpoint's average
            return points.length && points[points.length - 1][1] === 24.5 && drawn[drawn.length - 1] === 24.5;
        }"""
    )
    assert page.evaluate("window.__bmsNoReload") == "still-here"
