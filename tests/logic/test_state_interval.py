"""A rule's state reaches the image at once when anything but its block's bookkeeping (when it last stepped, what it
last read) changed; a change of that alone at most every STATE_INTERVAL, and then with the latest state."""

import itertools
from datetime import UTC, datetime, timedelta

from bms.logic.expr import Type
from bms.logic.runner import STATE_INTERVAL, RuleRunner
from bms.logic.spec import OutputSpec, compile_rule, entry_name

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VALVE = OutputSpec("valve", Type.NUMBER, "float32", low=0.0, high=100.0)
ENTRY = entry_name("loop")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def pid_runner(deadband: float = 0.0) -> RuleRunner:
    # heating, saturated: the error is far beyond what the output can answer, so the output stays at 100
    # (no commands) while the block's state (its sample time) moves every second
    spec = compile_rule(
        "loop",
        "pid",
        inputs={"pv": "{temp}", "sp": "{sp}"},
        params={"kp": 5, "ki": 0.1, "out_min": 0, "out_max": 100, "sample_time": 1},
        outputs=[VALVE],
        types={"temp": Type.NUMBER, "sp": Type.NUMBER},
        deadband=deadband,
    )
    return RuleRunner([spec])


VALUES = {"temp": (10.0, "good"), "sp": (40.0, "good"), "valve": (0.0, "good")}


def saturated() -> tuple[RuleRunner, int]:
    """The loop at 100 %, and the second it got there (it starts bumpless from the valve's 0)."""
    runner = pid_runner()
    runner.evaluate(at(0), VALUES)
    second = 0
    while runner.state_of("loop").out != [100.0]:
        second += 1
        assert second < 600, "the loop never saturated"
        runner.evaluate(at(second), VALUES, ["temp"])
    return runner, second


def test_a_steady_pid_hands_out_its_block_state_once_per_interval_with_the_latest_state():
    runner, warm = saturated()
    interval = int(STATE_INTERVAL.total_seconds())
    handed = []
    for second in range(warm + 1, warm + interval * 3 + 1):
        result = runner.evaluate(at(second), VALUES, ["temp"])
        assert not result.commands  # saturated: steady output
        if ENTRY in result.states:
            handed.append(second - warm)
            assert result.states[ENTRY] == runner.states()[ENTRY]  # the latest state, not an old one
    assert [b - a for a, b in itertools.pairwise(handed)] == [interval, interval]
    assert handed[0] <= interval


def test_a_command_or_a_quality_change_is_handed_out_at_once():
    runner, warm = saturated()
    bad = dict(VALUES, temp=(10.0, "comm_failure"))
    result = runner.evaluate(at(warm + 1), bad, ["temp"])
    assert result.states[ENTRY]["q"] == "bad"  # one second after the last hand-out: quality goes at once
    # the setpoint drops below the temperature: the output falls, a command, and its state at once
    result = runner.evaluate(at(warm + 2), dict(VALUES, sp=(5.0, "good")), ["sp", "temp"])
    assert result.commands and result.states[ENTRY]["n"] == runner.state_of("loop").number


def test_a_pid_in_control_hands_out_every_sample_even_without_a_command():
    # 0.1 degC below the setpoint: the integral moves every sample while the output moves less than the deadband
    runner = pid_runner(deadband=5.0)
    values = dict(VALUES, temp=(39.9, "good"), valve=(50.0, "good"))
    runner.evaluate(at(0), values)
    for second in range(1, 8):
        result = runner.evaluate(at(second), values, ["temp"])
        assert not result.commands
        assert ENTRY in result.states, f"the moving integral waited at second {second}"
