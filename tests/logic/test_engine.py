"""Logic rules on the real engine against a real pymodbus device: commands at the device, quality, a PID, takeover.

The engine runs the demo building (``loaddemo``) from a real pymodbus server
with its physics frozen, so the tests set every input themselves; each waits
for a condition with a deadline. What a rule did is judged where it lands:
the ``Command`` rows (the command path), the device's registers, and the
rule's image entry ``logic:<rule>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.core.management import call_command
from django.db import connections

from bms.control.models import Command
from bms.engine.image import GOOD
from bms.engine.role import RoleGate
from bms.engine.runner import Engine
from bms.logic.engine import TAKEOVER_GAP, LogicEngine
from bms.logic.models import Rule
from bms.logic.spec import entry_name
from bms.points.models import Device
from drivers.simulator.building import _to_registers
from tests.support.proxy import Proxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def plant(building, transactional_db):
    await sync_to_async(call_command)(
        "loaddemo", modbus_port=building.port, poll_interval=0.05, no_alarms=True, verbosity=0
    )
    yield building
    await sync_to_async(connections.close_all)()


def new_engine(role: RoleGate | None = None) -> Engine:
    return Engine(
        InMemoryChannelLayer(capacity=10000),
        role=role,
        publish_min_interval=0.0,
        config_check_interval=0.05,
        command_scan_interval=0.05,
    )


@pytest.fixture
async def engine(plant):
    node = new_engine()
    await node.start()
    try:
        await eventually(lambda: node.image.points["zone1_temp"].quality == GOOD, message="first poll")
        yield node
    finally:
        await node.stop()


def logic(engine: Engine) -> LogicEngine:
    return next(function for function in engine.functions if isinstance(function, LogicEngine))


@sync_to_async
def define(name: str, **fields) -> Rule:
    return Rule.objects.create(name=name, **fields)


@sync_to_async
def commands(rule: str, epoch: int | None = None) -> list[tuple[int, object, str]]:
    """The rule's commands in the log (made in ``epoch``): (number, value, status), by number."""
    rows = Command.objects.filter(command_id__startswith=f"logic:{rule}:", source="logic")
    if epoch is not None:
        rows = rows.filter(accepted_epoch=epoch)
    return sorted((int(row.command_id.rsplit(":", 1)[1]), row.value, row.status) for row in rows)


async def final(rule: str, count: int, wait: float = 10.0) -> list[tuple[int, object, str]]:
    """Wait until the rule has ``count`` commands in the log, all with an outcome; return them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        rows = await commands(rule)
        if len(rows) >= count and all(status in Command.FINAL for _, _, status in rows):
            return rows
        if loop.time() > deadline:
            raise AssertionError(f"{rule}: expected {count} finished commands, have {rows}")
        await asyncio.sleep(0.05)


def entry(engine: Engine, rule: str) -> dict:
    state = engine.image.points.get(entry_name(rule))
    return state.value if state is not None and isinstance(state.value, dict) else {}


DAMPER_RULE = {"expression": "limit(({zone1_temp} - 20) * 10, 0, 100)", "output": "ahu1_damper", "cycle_time": 0.2}


async def test_an_input_change_is_commanded_recorded_and_written_to_the_device_and_a_steady_one_is_not(engine, plant):
    await plant.set("zone1_temp", 24.0)
    await eventually(lambda: engine.image.points["zone1_temp"].value == 24.0, message="zone1_temp polled")
    await define("damper_from_temp", **DAMPER_RULE)
    await eventually(lambda: entry(engine, "damper_from_temp").get("out") == [40], message="rule loaded and run")
    await _wait_device(plant, "ahu1_damper", 40)
    assert await final("damper_from_temp", 1) == [(1, 40, "succeeded")]
    assert entry(engine, "damper_from_temp") == {"q": "good", "out": [40], "n": 1}

    # the input moves: a new command with the next number, executed at the device
    await plant.set("zone1_temp", 26.5)
    await _wait_device(plant, "ahu1_damper", 65)
    await final("damper_from_temp", 2)

    # steady: an input change that gives the same output, and many cycles, make no command and no state change
    function = logic(engine)
    seq = engine.image.points[entry_name("damper_from_temp")].seq
    await plant.set("zone1_temp", 26.51)
    await eventually(lambda: engine.image.points["zone1_temp"].value == pytest.approx(26.51), message="polled")
    runs = function.evaluations
    await eventually(lambda: function.evaluations >= runs + 10, message="ten more runs of the rule (cycles)")
    assert [number for number, _, _ in await commands("damper_from_temp")] == [1, 2]
    assert engine.image.points[entry_name("damper_from_temp")].seq == seq
    assert engine.sink.stats()["refused"] == 0


async def test_a_new_configuration_keeps_the_state_of_the_rules_that_stay(engine, plant):
    await plant.set("zone1_temp", 24.0)
    await eventually(lambda: engine.image.points["zone1_temp"].value == 24.0)
    await define("damper_from_temp", **DAMPER_RULE)
    await eventually(lambda: entry(engine, "damper_from_temp").get("n") == 1, message="commanded once")
    revision = engine.config.revision
    await define("fan_when_hot", expression="{zone2_temp} > 30", output="ahu1_fan_cmd")
    await eventually(lambda: entry(engine, "fan_when_hot").get("n") == 1, message="the new rule runs")
    assert engine.config.revision > revision
    assert entry(engine, "damper_from_temp") == {"q": "good", "out": [40], "n": 1}  # not commanded again
    assert await final("damper_from_temp", 1) == [(1, 40, "succeeded")]


async def test_a_bad_input_applies_the_quality_policy_and_a_good_one_resumes(engine, plant):
    await plant.set("zone1_temp", 23.0)
    await eventually(lambda: engine.image.points["zone1_temp"].value == 23.0)
    await define("damper_fallback", quality_policy="fallback", fallback_value=100.0, **DAMPER_RULE)
    await eventually(lambda: entry(engine, "damper_fallback").get("n") == 1)  # 23 degC -> 30 % (as the device)
    await eventually(lambda: entry(engine, "damper_fallback").get("out") == [30])

    await plant.set("zone1_temp", math.nan)  # the sensor fails: the device reports NaN
    await _wait_device(plant, "ahu1_damper", 100)
    state = entry(engine, "damper_fallback")
    assert state["q"] == "bad" and state["why"], state
    rows = await final("damper_fallback", 2)
    assert [(number, value) for number, value, _ in rows] == [(1, 30), (2, 100)]

    # held while bad (no repeat of the fallback), then the computed value once the sensor is back
    function = logic(engine)
    runs = function.evaluations
    await eventually(lambda: function.evaluations >= runs + 5, message="runs while bad")
    assert len(await commands("damper_fallback")) == 2
    await plant.set("zone1_temp", 22.0)
    await _wait_device(plant, "ahu1_damper", 20)
    assert entry(engine, "damper_fallback")["q"] == "good"


# ---- a PID on a first-order plant ---------------------------------------------------------------------------------

AMBIENT, GAIN, TAU = 10.0, 0.2, 5.0  # pv -> AMBIENT + GAIN * damper with a time constant of TAU s
SETPOINT = 20.0  # needs a damper of 50 %
# SIMC for K 0.2, tau 5 s, dead time ~0.2 s (poll and sample), tau_c 2 s: kp = 5 / (0.2 * 2.2), Ti = tau
PID_RULE = {
    "kind": "pid",
    "inputs": {"pv": "{zone1_temp}", "sp": SETPOINT},
    "params": {"kp": 11.0, "ki": 2.2, "sample_time": 0.2, "out_min": 0, "out_max": 100},
    "output": "ahu1_damper",
    "cycle_time": 0.2,
}


class FirstOrderPlant:
    """A small loop next to the device: reads the damper the engine writes, moves zone1_temp toward its effect."""

    def __init__(self, building, step: float = 0.05) -> None:
        self.building = building
        self.step = step
        self.pv = AMBIENT + GAIN * 30.0
        self.history: list[tuple[float, float, float]] = []  # (time, pv, damper)
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> FirstOrderPlant:
        await self.building.set("zone1_temp", self.pv)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.step)
            now = time.monotonic()
            damper = float(await self.building.get("ahu1_damper"))
            target = AMBIENT + GAIN * damper
            self.pv += (target - self.pv) * (1 - math.exp(-(now - last) / TAU))
            last = now
            await self.building.set("zone1_temp", self.pv)
            self.history.append((now, self.pv, damper))

    def settled(self, band: float, seconds: float) -> bool:
        """The last ``seconds`` of the record all within ``band`` of the setpoint (and that long recorded)."""
        if not self.history or self.history[-1][0] - self.history[0][0] < seconds:
            return False
        since = self.history[-1][0] - seconds
        return all(abs(pv - SETPOINT) <= band for at, pv, _ in self.history if at >= since)


async def test_a_pid_settles_a_first_order_plant_at_its_setpoint(engine, plant):
    async with FirstOrderPlant(plant) as loop:
        await define("zone1_loop", **PID_RULE)
        await eventually(lambda: loop.settled(0.2, 3.0), 90, "the plant settled within 0.2 of the setpoint for 3 s")
        start = loop.history[0][0]
        reached = next(at for at, pv, _ in loop.history if pv >= SETPOINT - 0.2) - start
        overshoot = max(pv for _, pv, _ in loop.history) - SETPOINT
        print(f"pid: reached the band after {reached:.1f} s, overshoot {overshoot:.2f} degC")
        assert overshoot < 1.0
        assert abs(loop.history[-1][2] - 50.0) <= 3  # the damper the plant needs at the setpoint
        state = entry(engine, "zone1_loop")
        assert state["k"] == "pid" and state["q"] == "good" and state["block"]
    assert engine.sink.stats()["refused"] == 0


# ---- control moving between engines -------------------------------------------------------------------------------


class Switchable(RoleGate):
    """A role the test flips, as the redundancy layer does on takeover."""

    def __init__(self, active: bool, epoch: int = 1) -> None:
        self.is_active = active
        self.current_epoch = epoch

    @property
    def active(self) -> bool:
        return self.is_active

    @property
    def epoch(self) -> int:
        return self.current_epoch


async def test_a_successor_continues_the_pid_state_and_numbering_and_reasserts_the_last_output(plant):
    async with FirstOrderPlant(plant) as loop:
        await define("zone1_loop", **PID_RULE)
        old = new_engine(Switchable(True, epoch=1))
        await old.start()
        standby = new_engine(Switchable(False, epoch=1))
        await standby.start()
        try:
            await eventually(lambda: loop.settled(0.5, 2.0), 90, "the loop runs")
            await eventually(lambda: old.sink.waiting == 0 and old.sink.created >= 3)
            # the sync link's job, done by hand: the standby's image is the active node's
            rows = old.image.snapshot_rows()
            standby.image.load_rows(rows["seq"], rows["points"])
            replicated = entry(standby, "zone1_loop")
        finally:
            await old.stop()
        try:
            standby.role.is_active, standby.role.current_epoch = True, 2
            await standby.take_control()
            # the re-assert is recorded; a settled loop at a whole-percent damper may need nothing more
            await eventually(lambda: standby.sink.created >= 1 and standby.sink.waiting == 0, 10, "the re-assert")
            continued = entry(standby, "zone1_loop")["block"]
            await eventually(lambda: loop.settled(0.5, 3.0), 30, "the loop stays in band under the successor")
        finally:
            await standby.stop()
    old_rows, new_rows = await commands("zone1_loop", epoch=1), await commands("zone1_loop", epoch=2)
    assert new_rows[0][0] == replicated["n"] + TAKEOVER_GAP + 1  # the numbering continues, past the gap
    assert new_rows[0][1] == replicated["out"][0]  # the re-assert: the last output the successor knows of, again
    assert max(number for number, _, _ in old_rows) < new_rows[0][0]  # no id used twice
    # the integrator continued from the replicated state (a fresh pid would have started from the output alone)
    assert continued["integral"] == pytest.approx(replicated["block"]["integral"], abs=5.0)
    assert continued["last_time"] >= replicated["block"]["last_time"]
    assert standby.sink.stats()["refused"] == 0


async def test_a_cold_start_continues_the_numbering_of_the_command_log(plant):
    await plant.set("zone1_temp", 24.0)
    await define("damper_from_temp", **DAMPER_RULE)
    first = new_engine()
    await first.start()
    try:
        await _wait_device(plant, "ahu1_damper", 40)
        await plant.set("zone1_temp", 25.0)
        await _wait_device(plant, "ahu1_damper", 50)
        await eventually(lambda: first.sink.waiting == 0 and first.sink.created == 2)
    finally:
        await first.stop()
    await plant.set("zone1_temp", 21.0)
    again = new_engine()  # a lone node restarted: an empty image, no state to adopt
    await again.start()
    try:
        await _wait_device(plant, "ahu1_damper", 10)
        await final("damper_from_temp", 3)
        assert again.sink.stats()["refused"] == 0
    finally:
        await again.stop()
    assert [(n, v) for n, v, _ in await commands("damper_from_temp")] == [(1, 40), (2, 50), (3, 10)]


async def test_a_flood_of_changes_is_evaluated_in_slices(engine, plant, monkeypatch):
    """More rules due at once than a slice: every one runs, in several passes with the loop free in between."""
    monkeypatch.setattr("bms.logic.engine.SLICE", 1)
    function = logic(engine)
    await define("fan1_when_hot", expression="{zone2_temp} > 30", output="ahu1_fan_cmd", cycle_time=60)
    await define("fan2_when_hot", expression="{zone3_temp} > 30", output="ahu2_fan_cmd", cycle_time=60)
    await eventually(lambda: entry(engine, "fan1_when_hot").get("out") == [False], message="loaded")
    await eventually(lambda: entry(engine, "fan2_when_hot").get("out") == [False], message="loaded")
    await _wait_device(plant, "ahu1_fan_cmd", False)
    slices, runs = function.slices, function.evaluations
    # zone2_temp and zone3_temp (ir:12-15) in one write: they change in one poll answer, one pass, two slices
    await plant.server.context.async_setValues(0, 4, 12, _to_registers(35.0, "float32") * 2)
    await _wait_device(plant, "ahu1_fan_cmd", True)
    await _wait_device(plant, "ahu2_fan_cmd", True)
    assert function.evaluations - runs == 2 and function.slices - slices >= 2


@sync_to_async
def _device_behind(port: int) -> None:
    """A second device on the same simulator, reached through ``port`` (a proxy), with ``b_damper`` on the register
    of ``ahu1_damper``: a rule writing it fails while the proxy is cut, while its inputs still come in."""
    device = Device.objects.get(name="plant")
    template = device.points.get(name="ahu1_damper")
    device.pk, device.name, device.port, device.timeout = None, "plant_b", port, 0.3
    device.save()
    template.pk, template.name, template.device = None, "b_damper", device
    template.save()


NOT_AT_DEVICE = (Command.FAILED, Command.UNKNOWN)


async def test_a_rule_output_that_never_reached_its_device_is_commanded_again(plant):
    proxy = Proxy(plant.port)
    node = None
    try:
        await _device_behind(proxy.port)
        node = new_engine()
        await node.start()
        await eventually(lambda: node.image.points["b_damper"].quality == GOOD, message="b_damper polled")
        await plant.set("zone1_temp", 24.0)
        await eventually(lambda: node.image.points["zone1_temp"].value == 24.0, message="zone1_temp polled")
        await define("damper_b", **{**DAMPER_RULE, "output": "b_damper"})
        await _wait_device(plant, "ahu1_damper", 40)

        proxy.cut()  # the output's device goes away; the input's stays
        await plant.set("zone1_temp", 26.5)

        def failed() -> bool:
            rows = Command.objects.filter(command_id__startswith="logic:damper_b:", value=65)
            return rows.filter(status__in=NOT_AT_DEVICE).exists()

        await eventually(
            failed, wait=10, message="the command of 65 failed (or went unanswered) at the cut device", db=True
        )
        proxy.restore()
        await _wait_device(plant, "ahu1_damper", 65, wait=30)
        rows = await final("damper_b", 3)
        # 40 once, then 65 not at the device (at least once) and succeeded once, by the rule's own later command
        assert rows[0] == (1, 40, Command.SUCCEEDED) and rows[-1][1:] == (65, Command.SUCCEEDED), rows
        assert all(value == 65 and status in NOT_AT_DEVICE for _, value, status in rows[1:-1]), rows
        assert [number for number, _, _ in rows] == list(range(1, len(rows) + 1)), rows
        assert logic(node).retries == len(rows) - 2
        assert entry(node, "damper_b")["out"] == [65]
    finally:
        proxy.close()
        if node is not None:
            await node.stop()


async def _wait_device(plant, name: str, value: float, wait: float = 10.0) -> None:
    seen: list[object] = []

    async def check() -> bool:
        seen.append(await plant.get(name))
        return seen[-1] == value

    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{name} never became {value} at the device; last {seen[-1]!r}")
        await asyncio.sleep(0.02)
