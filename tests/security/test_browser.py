"""Every page under the Content-Security-Policy in a real Chromium, and a logged-out page's websocket closing.

Findings (issue 13): there was no Content-Security-Policy; a websocket kept streaming after its user logged out.
The node is a real production-shape node (Daphne, PostgreSQL, Redis) with the simulated building.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.test_points_page import log_in, wait_live

pytestmark = pytest.mark.browser

#: every page of the web manager a user reaches from the menu, the admin and the API documentation
PAGES = [
    "/points/",
    "/alarms/",
    "/alarms/journal/",
    "/events/",
    "/trends/",
    "/schedules/",
    "/logic/",
    "/redundancy/",
    "/admin/",
    "/admin/points/point/",
    "/admin/points/point/add/",
    "/api/v1/docs/",
    "/api/v1/redoc/",
]
#: Redoc's own page asks a CDN for the "API docs by Redocly" logo: the policy keeping the node off the internet
#: refuses exactly that, and the page works without it
EXPECTED_REFUSAL = "img-src https://cdn.redoc.ly/"
#: what records CSP refusals: added before any script of the page runs
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
    (e) => window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' ' + e.sourceFile));
"""


@pytest.fixture(scope="module")
def chromium():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    context.add_init_script(WATCH_CSP)
    yield context
    context.close()


def make_staff(node) -> None:
    node.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.filter(username='demo')"
        ".update(is_staff=True, is_superuser=True)",
    )


def test_every_page_works_under_the_content_security_policy(node, context):
    make_staff(node)
    page = context.new_page()
    console_refusals: list[str] = []
    page.on("console", lambda m: console_refusals.append(m.text) if "Content Security Policy" in m.text else None)
    log_in(page, node, "demo", "demo")
    wait_live(page)  # live.js, livesocket.js and the websocket run under the policy
    for path in PAGES:
        response = page.goto(f"{node.base_url}{path}")
        assert response is not None and response.status == 200, path
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        page.wait_for_load_state("networkidle")
        refused = [entry for entry in page.evaluate("window.__csp") if not entry.startswith(EXPECTED_REFUSAL)]
        assert refused == [], (path, refused)
    # what the pages' own scripts draw is there (they ran)
    page.goto(f"{node.base_url}/api/v1/docs/")
    expect(page.locator(".swagger-ui .info")).to_be_visible()
    page.goto(f"{node.base_url}/api/v1/redoc/")
    expect(page.locator("redoc, #redoc-container").first).to_contain_text("BMS API")
    assert [text for text in console_refusals if "cdn.redoc.ly" not in text] == []


def test_a_logged_out_pages_websocket_closes(node, context):
    page = context.new_page()
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws))  # a lambda: Playwright cannot wrap a builtin method
    log_in(page, node, "demo", "demo")
    wait_live(page)
    live = next(ws for ws in sockets if ws.url.endswith("/ws/live/") or "/ws/live/?" in ws.url)
    frames: list[str] = []
    live.on("framereceived", lambda payload: frames.append(payload if isinstance(payload, str) else ""))
    other = context.new_page()  # the same browser, another tab: logs out
    other.goto(f"{node.base_url}/events/")
    with live.expect_event("close", timeout=10_000):
        other.get_by_role("button", name="Log out").click()
        expect(other).to_have_url(re.compile(r"/login/"))
    assert any('"logged_out"' in frame for frame in frames), frames[-3:]
    # the page says so and stays closed (livesocket.js does not retry a 4401)
    expect(page.locator("#live-status")).to_have_text("not logged in")
