"""Headless Chromium follows the active node of a real pair: after a kill -9 and after a switchover.

Two real nodes (``runbms``, production shape, from ``tests.support.pair``)
and the simulated building. The points page open on the active node must
be on the other node, logged in (follow token, no password typed), with
its websocket connected, within 2 s of the takeover, and keep receiving
values there.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.support.pair import Pair, PairNode, PairOptions, Template
from tests.support.processes import ROOT, Simulator, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.system]

PERIOD_MS = 200  # timeout 600 ms
FOLLOW_BUDGET_S = 2.0


@pytest.fixture(scope="module")
def pair():
    """main active and backup standby; manual failback, so a restarted node stays standby until asked."""
    log = ROOT / "var" / "test-logs" / f"follow-writes-{uuid.uuid4().hex[:8]}.jsonl"  # not written: no write log
    simulator = Simulator()
    template = None
    pair = None
    try:
        template = Template(simulator.port, poll_interval=0.1)
        pair = Pair(template, log, PairOptions(period_ms=PERIOD_MS, failback="manual", hold_down_ms=0))
        pair.up()
        yield pair
    finally:
        if pair is not None:
            pair.close()
            for node in pair.nodes.values():
                print(f"{node.name} log: {node.log_path}")
        if template is not None:
            template.drop()
        simulator.stop()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def roles(pair: Pair) -> tuple[PairNode, PairNode]:
    """(active, standby), once the pair has settled with a caught-up standby."""
    settled = wait_until(
        lambda: _settled(pair),
        30,
        0.1,
        "one active node and one caught-up standby",
    )
    return settled


def _settled(pair: Pair) -> tuple[PairNode, PairNode] | None:
    states = {name: node.state() if node.alive else {"role": "down"} for name, node in pair.nodes.items()}
    active = [pair.nodes[n] for n, s in states.items() if s["role"] == "active"]
    standby = [
        pair.nodes[n]
        for n, s in states.items()
        if s["role"] == "standby" and (s.get("status") or {}).get("sync", {}).get("caught_up")
    ]
    return (active[0], standby[0]) if len(active) == 1 and len(standby) == 1 else None


def open_points_on(page: Page, node: PairNode) -> None:
    page.goto(f"{node.base_url}/login/")
    page.fill("input[name=username]", "demo")
    page.fill("input[name=password]", "demo")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{node.base_url}/points/")
    wait_live(page)
    expect(page.locator("#pair-banner")).to_have_attribute("data-role", "active")
    page.wait_for_function("() => window.bmsFollow && window.bmsFollow.hasToken")  # a function: CSP refuses eval


def wait_live(page: Page) -> None:
    expect(page.locator("#live-status")).to_have_text("connected")
    expect(page.locator("#live-seq")).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator('tr[data-point="zone1_temp"] td.value')).to_have_attribute("data-raw", re.compile(r"^-?\d"))


def seq(page: Page) -> int:
    return int(page.locator("#live-seq").text_content())


def assert_keeps_updating(page: Page) -> None:
    """Deltas keep arriving on the new node: the sequence moves on, twice, and point values change."""
    raw = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('tr[data-point]')]"
        ".map(tr => [tr.dataset.point, tr.querySelector('td.value').dataset.raw]))"
    )
    for _ in range(2):
        before = seq(page)
        # a function, not an expression: Playwright evaluates a bare expression with eval, which the CSP refuses
        page.wait_for_function(
            "(before) => Number(document.querySelector('#live-seq').textContent) > before", arg=before, timeout=5_000
        )
    page.wait_for_function(
        """(before) => [...document.querySelectorAll('tr[data-point]')].some(
               tr => tr.querySelector('td.value').dataset.raw !== before[tr.dataset.point])""",
        arg=raw,
        timeout=5_000,
    )
    expect(page.locator("#live-status")).to_have_text("connected")


def became_active_at(node: PairNode, after: float) -> float:
    """Wall-clock time of the node's own change to active after ``after`` (from its event log)."""
    change = wait_until(
        lambda: next((c for c in node.role_changes(source=node.name) if c.new == "active" and c.time > after), None),
        10,
        0.05,
        f"{node.name} to record that it became active",
    )
    return change.time


def follow_to(page: Page, node: PairNode, navigations: list[str], since: float) -> float:
    """Wait until the page is live on ``node``; return how long after ``since`` its websocket connected."""
    page.wait_for_url(re.compile("^" + re.escape(node.base_url) + "/points/$"), timeout=15_000)
    wait_live(page)
    connected_at = page.evaluate("window.bmsLiveConnectedAt") / 1000
    # straight to the page, logged in by the follow token (its redirect is not a committed navigation)
    assert navigations == [f"{node.base_url}/points/"], f"expected one move, without a login page: {navigations}"
    expect(page.locator("#pair-banner")).to_have_attribute("data-role", "active")
    return connected_at - since


def test_page_follows_a_kill_9_of_the_active_node(pair, page):
    active, standby = roles(pair)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    open_points_on(page, active)
    navigations.clear()

    killed_at = active.kill9()
    took_over_at = became_active_at(standby, killed_at)
    delay = follow_to(page, standby, navigations, took_over_at)
    print(f"takeover {took_over_at - killed_at:.3f} s after the kill; page live on {standby.name} {delay:.3f} s later")
    assert delay <= FOLLOW_BUDGET_S, f"the page was live on {standby.name} only {delay:.2f} s after the takeover"
    assert_keeps_updating(page)

    # the killed node comes back as standby (manual failback) for the next test
    active.start()
    active.wait_web()


def test_page_follows_a_switchover_asked_from_the_command_line(pair, page):
    active, standby = roles(pair)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    open_points_on(page, active)
    navigations.clear()

    def ask() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "redundancy", "switchover", "--wait", "15"],
            cwd=ROOT,
            env=standby.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    # The standby's "caught up" is a live condition: on a loaded host (the node killed in the test before came
    # back a moment ago) it can drop for a moment after roles() saw it, and the command rightly refuses then.
    # An operator asks again; so does the test, for as long as that is the only reason given.
    asked_at = time.time()
    result = wait_until(
        lambda: answer if "has not caught up" not in (answer := ask()).stderr else None,
        30,
        0.5,
        "a switchover answer other than 'has not caught up'",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"switchover complete: {standby.name} is active" in result.stdout
    took_over_at = became_active_at(standby, asked_at)
    delay = follow_to(page, standby, navigations, took_over_at)
    print(f"switchover done {took_over_at - asked_at:.3f} s after asking; page live {delay:.3f} s later")
    assert delay <= FOLLOW_BUDGET_S
    assert_keeps_updating(page)
    assert active.role() == "standby"
