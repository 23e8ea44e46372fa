"""The alarm console in headless Chromium against a real pair: real engine, real websocket, real standby.

One alarm of our own (``test.ahu2_sp_high``: AHU 2's supply setpoint above
20 degC, class critical) is imported into the template database that both
nodes are cloned from; the demo's own alarms are removed there, so nothing
else goes off meanwhile. The setpoint is changed at the simulated device
itself (a Modbus write, as a local panel would), and the test watches what
operators see: the row in the console within 1 s of the value crossing its
limit, the header count, the sound, the acknowledgement and its journal row,
shelving and unshelving with a comment, the points page's alarm column, and
the standby's console refusing an action (503, recorded in its audit trail).
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import time
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_pair_follow import roles
from tests.browser.test_points_page import run_async
from tests.support.pair import Pair, PairNode, PairOptions, Template, base_env
from tests.support.processes import ROOT, Simulator, wait_until
from tests.system.test_live_websocket import write_device_register

pytestmark = [pytest.mark.browser, pytest.mark.system]

ALARM = "test.ahu2_sp_high"
POINT = "ahu2_supply_setpoint"
REGISTER = 12  # hr:12, float32 (drivers/simulator/building.py)
NORMAL_VALUE = 16.0
ALARM_VALUE = 21.0  # above the limit of 20
LATENCY_BUDGET_S = 1.0
ALARM_CSV = (
    "name,point,kind,class,limit,deadband,area,message\n"
    f"{ALARM},{POINT},high,critical,20,0.5,AHU 2,AHU 2 supply setpoint above {{limit}} {{unit}}: {{value:.1f}}\n"
)
SCREENSHOT = ROOT / "var" / "test-logs" / "alarm-console.png"


def manage(env: dict[str, str], *args: str) -> str:
    """Run a management command against the template database."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def simulator():
    sim = Simulator()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def pair(simulator, tmp_path_factory):
    """main active and backup standby, both configured with the test alarm and none of the demo's."""
    log = ROOT / "var" / "test-logs" / f"alarm-writes-{uuid.uuid4().hex[:8]}.jsonl"  # not written: no write log
    template = pair = None
    try:
        template = Template(simulator.port, poll_interval=0.1)
        env = base_env(template.name, "template")
        manage(
            env,
            "shell",
            "-c",
            "from bms.alarms.models import AlarmDefinition; AlarmDefinition.objects.filter(name__startswith='demo.')"
            ".delete()",
        )
        definitions = tmp_path_factory.mktemp("alarms") / "test-alarm.csv"
        definitions.write_text(ALARM_CSV)
        assert "created 1" in manage(env, "importalarms", str(definitions))
        pair = Pair(template, log, PairOptions(period_ms=200, failback="manual", hold_down_ms=0))
        pair.up()
        yield pair
    finally:
        if pair is not None:
            pair.close()
            for node in pair.nodes.values():
                print(f"{node.name} log: {node.log_path}")
        if template is not None:
            template.drop()


@pytest.fixture
def new_page(chromium):
    """Pages in fresh browser contexts (own cookies and storage), closed after the test."""
    contexts = []

    def make() -> Page:
        context = chromium.new_context(viewport={"width": 1400, "height": 900})
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.script_errors = errors
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def setpoint(simulator):
    """Set AHU 2's supply setpoint at the device; back to normal (and the alarm returned) whatever happens."""

    def put(value: float) -> float:
        started = time.time()
        run_async(write_device_register, simulator.port, REGISTER, value)
        return started

    yield put
    put(NORMAL_VALUE)


def open_console(page: Page, node: PairNode, path: str = "/alarms/", alarms: int = 1) -> None:
    """Log in as the demo operator straight onto ``path``; wait until the ``alarms`` live alarm entries are held."""
    page.goto(f"{node.base_url}/login/?next={path}")
    page.fill("input[name=username]", "demo")
    page.fill("input[name=password]", "demo")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))
    if path == "/alarms/":
        expect(page.locator("#live-status")).to_have_text("connected")
        expect(page.locator("#alarm-shown")).to_have_text(re.compile(f" of {alarms}$"))
    expect(page.locator("#alarm-counts")).to_have_attribute("data-total", re.compile(r"^\d+$"))


def alarm_row(page: Page):
    return page.locator(f'tr[data-alarm="{ALARM}"]')


def critical_badge(page: Page):
    return page.locator('#alarm-counts .alarm-badge[data-class="critical"]')


def act(page: Page, action: str, comment: str, duration: str | None = None) -> None:
    """Open the row's dialog for ``action``, fill in the comment (and duration) and send it."""
    alarm_row(page).locator(f'button[data-action="{action}"]').click()
    expect(page.locator("#alarm-dialog")).to_be_visible()
    expect(page.locator("#alarm-dialog-title")).to_have_text(re.compile(f"^{action}", re.I))
    if duration is not None:
        page.select_option("#shelve-duration", duration)
    page.fill("#alarm-comment", comment)
    page.locator("#alarm-submit").click()


def journal_rows(node: PairNode, transition: str) -> list[dict]:
    return node.query(
        "SELECT transition, state, username, comment FROM alarms_alarmjournal WHERE alarm = %s AND transition = %s",
        [ALARM, transition],
    )


def audit_refusals(node: PairNode) -> list[dict]:
    return node.query(
        "SELECT username, target, detail FROM control_auditentry WHERE action = 'refused.standby' AND target = %s",
        ["/alarms/action"],
    )


def test_a_new_alarm_is_shown_counted_sounded_acknowledged_and_refused_by_the_standby(pair, new_page, setpoint):
    active, standby = roles(pair)
    console = new_page()
    open_console(console, active)
    expect(console.locator("#alarm-counts")).to_have_attribute("data-total", "0")
    expect(critical_badge(console)).to_have_count(0)
    expect(console.locator("#alarm-mute")).to_have_attribute("data-rang", "0")
    on_standby = new_page()
    open_console(on_standby, standby)
    expect(on_standby.locator("#alarm-read-only")).to_be_visible()

    # the value crosses its limit at the device: the row is in the console within 1 s
    crossed_at = setpoint(ALARM_VALUE)
    row = alarm_row(console)
    expect(row).to_have_attribute("data-state", "active_unacked", timeout=5_000)
    shown_after = int(row.get_attribute("data-shown-at")) / 1000 - crossed_at
    print(f"{ALARM} shown {shown_after * 1000:.0f} ms after the value crossed its limit at the device")
    assert shown_after <= LATENCY_BUDGET_S, f"the alarm was shown {shown_after:.3f} s after the value crossed"
    expect(row.locator(".priority")).to_have_text("100")
    expect(row.locator(".alarm-class")).to_have_text("critical")
    expect(row.locator(".message")).to_have_text(re.compile(r"^AHU 2 supply setpoint above 20(\.0)? degC: 21\.0$"))
    expect(row.locator(".value")).to_have_text("21")

    # the header counts it, and a new critical alarm sounds
    expect(critical_badge(console)).to_have_text("critical 1")
    expect(console.locator("#alarm-counts")).to_have_attribute("data-total", "1")
    expect(console.locator("#alarm-mute")).to_have_attribute("data-rang", "1")
    expect(console.locator("#alarm-mute")).to_have_attribute("data-last", ALARM)

    # the standby shows it (replicated), but refuses to acknowledge it: 503, explained, recorded
    standby_row = alarm_row(on_standby)
    expect(standby_row).to_have_attribute("data-state", "active_unacked")
    expect(critical_badge(on_standby)).to_have_text("critical 1")
    act(on_standby, "acknowledge", "from the standby")
    result = on_standby.locator("#alarm-result")
    expect(result).to_have_attribute("data-outcome", "refused-standby")
    expect(result).to_contain_text("Refused")
    expect(result).to_contain_text(f"make changes on the active node {active.name}")
    refusals = audit_refusals(standby)
    assert len(refusals) == 1 and refusals[0]["username"] == "demo", refusals
    assert refusals[0]["detail"]["role"] == "standby" and refusals[0]["detail"]["method"] == "POST"
    assert not journal_rows(active, "acknowledged")
    expect(row).to_have_attribute("data-state", "active_unacked")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    console.screenshot(path=str(SCREENSHOT), full_page=True)

    # the active node acknowledges it, with the comment in the journal
    act(console, "acknowledge", "on my way")
    expect(console.locator("#alarm-dialog")).to_be_hidden()
    expect(console.locator("#alarm-notice")).to_have_text(f"Acknowledged: {ALARM}.")
    expect(row).to_have_attribute("data-state", "active_acked")
    expect(critical_badge(console)).to_have_count(0)
    expect(console.locator("#alarm-counts")).to_have_attribute("data-total", "0")
    expect(standby_row).to_have_attribute("data-state", "active_acked")
    expect(on_standby.locator("#alarm-counts")).to_have_attribute("data-total", "0")
    acknowledged = wait_until(lambda: journal_rows(active, "acknowledged"), 5, 0.05, "the journal row")
    assert acknowledged == [
        {"transition": "acknowledged", "state": "active_acked", "username": "demo", "comment": "on my way"}
    ]

    # back under the limit: the acknowledged alarm returns to normal and leaves the default view
    setpoint(NORMAL_VALUE)
    expect(row).to_have_count(0)
    assert wait_until(lambda: journal_rows(active, "returned"), 5, 0.05, "the return's journal row")
    assert console.script_errors == [] and on_standby.script_errors == []


def test_shelving_and_unshelving_with_a_comment_and_a_muted_sound(pair, new_page, setpoint):
    active, _ = roles(pair)
    console = new_page()
    open_console(console, active)
    console.select_option("#filter-state", "all")
    expect(console).to_have_url(re.compile(r"/alarms/\?state=all$"))
    row = alarm_row(console)
    expect(row).to_have_attribute("data-state", "normal")

    mute = console.locator("#alarm-mute")
    mute.click()
    expect(mute).to_have_attribute("aria-pressed", "true")
    expect(mute).to_have_text("Sound muted")
    setpoint(ALARM_VALUE)
    expect(row).to_have_attribute("data-state", "active_unacked")
    expect(mute).to_have_attribute("data-silenced", "1")
    expect(mute).to_have_attribute("data-rang", "0")

    act(console, "shelve", "sensor being replaced", duration="3600")
    expect(console.locator("#alarm-dialog")).to_be_hidden()
    expect(row).to_have_attribute("data-state", "shelved")
    expect(row.locator(".flags")).to_contain_text("by demo")
    expect(row.locator(".flags")).to_contain_text("until ")
    expect(console.locator("#alarm-counts")).to_have_attribute("data-total", "0")  # a shelved alarm is not counted
    expect(row.locator('button[data-action="unshelve"]')).to_be_visible()
    expect(row.locator('button[data-action="shelve"]')).to_be_hidden()

    act(console, "unshelve", "sensor replaced")
    expect(row).to_have_attribute("data-state", "active_unacked")  # its condition still holds: raised again
    expect(mute).to_have_attribute("data-silenced", "2")
    expect(console.locator("#alarm-counts")).to_have_attribute("data-total", "1")
    act(console, "acknowledge", "")
    expect(row).to_have_attribute("data-state", "active_acked")
    setpoint(NORMAL_VALUE)
    expect(row).to_have_attribute("data-state", "normal")

    # the journal page lists what happened, and its CSV export carries the same rows with their comments
    console.goto(f"{active.base_url}/alarms/journal/?alarm={ALARM}&transition=shelved")
    shelved = console.locator(f'#journal-table tr[data-alarm="{ALARM}"][data-transition="shelved"]')
    expect(shelved).to_have_count(1)
    expect(shelved).to_contain_text("sensor being replaced")
    response = console.request.get(f"{active.base_url}/alarms/journal.csv?alarm={ALARM}")
    assert response.status == 200 and response.headers["content-type"].startswith("text/csv")
    exported = list(csv.DictReader(io.StringIO(response.text())))
    comments = {(r["transition"], r["comment"], r["user"]) for r in exported}
    assert ("shelved", "sensor being replaced", "demo") in comments
    assert ("unshelved", "sensor replaced", "demo") in comments
    assert console.script_errors == []


def test_the_points_page_shows_the_points_alarm_state(pair, new_page, setpoint):
    active, _ = roles(pair)
    page = new_page()
    open_console(page, active, "/points/")
    cell = page.locator(f'tr[data-point="{POINT}"] td.alarm')
    expect(cell).to_have_attribute("data-alarm-state", "normal")
    expect(cell).to_have_attribute("data-alarm", ALARM)
    expect(page.locator('tr[data-point="zone1_temp"] td.alarm')).to_have_text("")  # no alarm on that point
    setpoint(ALARM_VALUE)
    expect(cell).to_have_attribute("data-alarm-state", "active_unacked")
    expect(cell).to_have_text("active unacked")
    expect(page.locator("#alarm-mute")).to_have_attribute("data-rang", "1")  # the points page sounds too
    expect(page.locator("#alarm-counts")).to_have_attribute("data-total", "1")
    setpoint(NORMAL_VALUE)
    expect(cell).to_have_attribute("data-alarm-state", "rtn_unacked")
    assert page.script_errors == []


def test_an_alarm_defined_while_the_console_is_open_shows_when_it_goes_off(pair, new_page, setpoint, tmp_path):
    """The console follows the alarm family: a definition added while it is open appears without a reload."""
    active, _ = roles(pair)
    console = new_page()
    open_console(console, active)
    added = "test.ahu2_sp_high_high"
    definitions = tmp_path / "added.csv"
    definitions.write_text(
        f"name,point,kind,class,limit,deadband,area\n{added},{POINT},high_high,high,21.5,0.5,AHU 2\n"
    )
    assert "created 1" in manage(active.env, "importalarms", str(definitions))
    try:
        # the engine runs it once it has loaded the new configuration; its entry joins the open console's family
        expect(console.locator("#alarm-shown")).to_have_text(re.compile(" of 2$"), timeout=15_000)

        setpoint(22.0)
        new_row = console.locator(f'tr[data-alarm="{added}"]')
        expect(new_row).to_have_attribute("data-state", "active_unacked", timeout=10_000)
        expect(alarm_row(console)).to_have_attribute("data-state", "active_unacked")
        expect(console.locator("#alarm-counts")).to_have_attribute("data-total", "2")
        console.locator("#select-all").check()
        console.locator("#ack-selected").click()
        expect(console.locator("#alarm-dialog-title")).to_have_text("Acknowledge 2 alarms")
        page_comment = "both seen"
        console.fill("#alarm-comment", page_comment)
        console.locator("#alarm-submit").click()
        expect(console.locator("#alarm-notice")).to_contain_text("Acknowledged:")
        expect(new_row).to_have_attribute("data-state", "active_acked")
        expect(alarm_row(console)).to_have_attribute("data-state", "active_acked")
        expect(console.locator("#alarm-counts")).to_have_attribute("data-total", "0")
        assert console.script_errors == []
    finally:
        setpoint(NORMAL_VALUE)
        manage(
            active.env,
            "shell",
            "-c",
            f"from bms.alarms.models import AlarmDefinition; AlarmDefinition.objects.filter(name='{added}').delete()",
        )
