"""A rule due with unchanged inputs and at rest is not computed again, and nothing can tell (issue 12).

Half the bench's rule runs a second were cycles of saturated PIDs, settled rate limiters, zero flows and
steady expressions: each stepped to the same state but for when it last stepped. The runner now moves that
bookkeeping instead (:meth:`Block.at_rest` / :meth:`Block.rest`). These tests hold it to "nothing can tell":

* per block, whenever ``at_rest`` says so, ``rest`` leaves exactly the state ``step`` would have, and
  ``step`` returns the output it had;
* per runner, a runner that rests and one that never does, fed the same inputs at the same times, make the
  same commands and hand out the same states, call by call, and keep the same states throughout.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bms.logic.blocks import PID, RateLimiter, Totalizer
from bms.logic.expr import Type
from bms.logic.runner import RuleRunner
from bms.logic.spec import OutputSpec, compile_rule

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TYPES = {"pv": Type.NUMBER, "sp": Type.NUMBER, "flow": Type.NUMBER, "auto": Type.BOOL, "x": Type.NUMBER}
OUT = OutputSpec("out", Type.NUMBER, "float32", low=0.0, high=100.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


pid_params = st.fixed_dictionaries(
    {
        "kp": st.sampled_from([0.5, 3.0]),
        "ki": st.sampled_from([0.0, 0.05, 0.5]),
        "kd": st.sampled_from([0.0, 0.0, 1.0]),
        "out_min": st.just(0.0),
        "out_max": st.just(100.0),
        "sample_time": st.sampled_from([0.5, 1.0]),
        "anti_windup": st.sampled_from(["clamp", "back_calculation"]),
        "action": st.sampled_from(["reverse", "direct"]),
    }
)
# inputs that saturate, settle or sit at the setpoint, so that rests happen
numbers = st.sampled_from([0.0, 20.0, 21.5, 22.0, 80.0, 1000.0, -1000.0])
steps = st.lists(st.tuples(st.sampled_from([0.3, 0.5, 1.0, 2.0, 7.0]), st.booleans()), min_size=3, max_size=25)


def _check_block(block, inputs_at, gaps) -> int:
    """Step ``block`` through ``gaps``; before each step with unchanged inputs, compare rest with step."""
    now, rests = 0.0, 0
    inputs = inputs_at(0)
    block.step(at(now), **inputs)
    for index, (gap, change) in enumerate(gaps, start=1):
        now += gap
        if change:
            inputs = inputs_at(index)
        elif block.at_rest(inputs):
            stepped = copy.deepcopy(block)
            output = stepped.step(at(now), **inputs)
            block.rest(at(now))
            assert block.to_dict() == stepped.to_dict(), (inputs, gap)
            assert output == (block.state.total if isinstance(block, Totalizer) else block.state.output)
            rests += 1
            continue
        block.step(at(now), **inputs)
    return rests


@settings(max_examples=300, deadline=None)
@given(pid_params, st.lists(st.tuples(numbers, numbers, st.booleans()), min_size=26, max_size=26), steps)
def test_a_pid_at_rest_rests_to_the_state_a_step_gives(params, values, gaps):
    block = PID(PID.make_params(params, 1))
    _check_block(block, lambda i: {"pv": values[i][0], "sp": values[i][1], "auto": values[i][2]}, gaps)


@settings(max_examples=200, deadline=None)
@given(st.lists(numbers, min_size=26, max_size=26), steps)
def test_a_rate_limiter_at_rest_rests_to_the_state_a_step_gives(values, gaps):
    block = RateLimiter(RateLimiter.make_params({"rise": 10.0}, 1))
    _check_block(block, lambda i: {"x": values[i]}, gaps)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.0, 3.0]), st.booleans()), min_size=26, max_size=26), steps)
def test_a_totalizer_at_rest_rests_to_the_state_a_step_gives(values, gaps):
    block = Totalizer(Totalizer.make_params({"per": 3600.0}, 1))
    _check_block(block, lambda i: {"x": values[i][0], "reset": values[i][1]}, gaps)


def test_a_saturated_pid_rests_and_one_in_control_does_not():
    block = PID(PID.make_params({"kp": 1.0, "ki": 0.1, "out_min": 0.0, "out_max": 100.0}, 1))
    block.step(at(0), pv=30.0, sp=20.0)  # too warm, reverse action: the output sits at 0 and pushes further down
    assert block.at_rest({"pv": 30.0, "sp": 20.0, "auto": True})
    block.step(at(1), pv=19.0, sp=20.0)  # below the setpoint: the integral moves every sample
    assert not block.at_rest({"pv": 19.0, "sp": 20.0, "auto": True})


def _runners():
    rules = [
        compile_rule(
            "loop",
            "pid",
            inputs={"pv": "{pv}", "sp": "{sp}", "auto": "{auto}"},
            params={"kp": 2.0, "ki": 0.2, "kd": 0.5, "out_min": 0, "out_max": 100, "sample_time": 1},
            outputs=[OUT],
            types=TYPES,
            cycle_time=1.0,
        ),
        compile_rule("ramp", "rate_limit", inputs={"x": "{x}"}, params={"rise": 5}, outputs=[OUT], types=TYPES),
        compile_rule(
            "meter", "totalizer", inputs={"x": "{flow}"}, params={"per": 60}, outputs=[OUT], types=TYPES, cycle_time=2
        ),
        compile_rule("calc", "expression", expression="limit({x} * 2, 0, 100)", outputs=[OUT], types=TYPES),
    ]
    return RuleRunner(rules), RuleRunner(rules)


changes = st.lists(
    st.tuples(
        st.sampled_from([0.25, 0.5, 1.0, 1.5, 3.0]),
        st.sampled_from(["pv", "sp", "x", "flow", "auto", None, None, None]),
        st.sampled_from([0.0, 15.0, 20.0, 25.0, 200.0]),
    ),
    min_size=5,
    max_size=60,
)


def _compare(sequence) -> tuple[int, int]:
    """Feed a resting runner and one that never rests ``(gap, point or None, value)`` steps; every call must make
    the same commands, states and runs, and the runners end with the same states. Returns (rested, runs)."""
    resting, stepping = _runners()
    stepping._rests = lambda rule, now: False  # the reference: every due run computed in full
    values = {"pv": (25.0, "good"), "sp": (20.0, "good"), "x": (10.0, "good"), "flow": (0.0, "good")}
    values["auto"] = (True, "good")
    now, rested, runs = 0.0, 0, 0
    for gap, point, value in sequence:
        now += gap
        changed = []
        if point is not None:
            values[point] = (bool(value) if point == "auto" else value, "good")
            changed.append(point)
        one = resting.evaluate(at(now), values, changed)
        other = stepping.evaluate(at(now), values, changed)
        assert one.commands == other.commands, now
        assert one.states == other.states, now
        assert set(one.evaluated) <= set(other.evaluated), now  # a resting block sleeps through its cycles
        rested += len(one.rested)
        runs += len(one.evaluated)
    assert resting.states() == stepping.states()
    return rested, runs


@settings(max_examples=150, deadline=None)
@given(changes)
def test_a_runner_that_rests_is_indistinguishable_from_one_that_steps(sequence):
    _compare(sequence)


def test_steady_rules_rest_and_resting_blocks_sleep_until_an_input_moves():
    resting, _ = _runners()
    values = {"pv": (50.0, "good"), "sp": (20.0, "good"), "x": (10.0, "good"), "flow": (0.0, "good")}
    values["auto"] = (True, "good")
    resting.evaluate(at(0), values, None)
    first = resting.evaluate(at(1), values, [])
    assert set(first.rested) == {"loop", "ramp", "calc"} and not first.commands, first
    quiet = resting.evaluate(at(2), values, [])
    # the expression rests on its cycle, the totalizer (a 2 s cycle) for the first time; the PID and the rate
    # limiter sleep through theirs
    assert set(quiet.evaluated) == set(quiet.rested) == {"calc", "meter"} and not quiet.commands, quiet
    values["pv"] = (60.0, "good")
    moved = resting.evaluate(at(3), values, ["pv"])
    # the PID's cycle of 2 s is replayed (a rest), then it runs in full; the rate limiter sleeps on
    assert "loop" in moved.evaluated and "ramp" not in moved.evaluated, moved
    assert moved.rested.count("loop") == 1 and set(moved.rested) == {"loop", "calc"}, moved
    assert resting.block_of("ramp").state.last_time == at(1)  # not moved since its rest at 1 s
    states = resting.states()  # catches every sleeping block up to the last call
    assert resting.block_of("ramp").state.last_time == at(3) and states["logic:ramp"]["block"]["last_time"]


def test_many_random_days_rest_often_and_never_differ():
    # the property above, on a fixed seed, counting the rests: a test that never rested would prove nothing
    import random

    rng = random.Random(1)
    rested = compared = 0
    for _ in range(200):
        sequence = [
            (
                rng.choice([0.25, 0.5, 1.0, 1.5, 3.0]),
                rng.choice(["pv", "sp", "x", "flow", "auto", None, None, None]),
                rng.choice([0.0, 15.0, 20.0, 25.0, 200.0]),
            )
            for _ in range(30)
        ]
        day_rested, day_runs = _compare(sequence)
        rested += day_rested
        compared += day_runs
    assert rested > compared // 5, (rested, compared)


def test_a_sleeping_block_left_for_a_later_slice_runs_as_one_that_never_rests():
    # a call with a limit leaves due rules for the next one: a resting PID woken for its state's hand-out (5 s
    # after it last handed it out) at a call that runs nothing must not count that call as one more rest, or its
    # step 0.2 s later would hold its output as "between samples" where the reference samples
    resting, stepping = _runners()
    stepping._rests = lambda rule, now: False
    values = {"pv": (50.0, "good"), "sp": (20.0, "good"), "x": (10.0, "good"), "flow": (0.0, "good")}
    values["auto"] = (True, "good")
    calls = [(0.0, None, None), *((float(t), [], None) for t in range(1, 5)), (5.0, [], 0), (5.2, [], None)]
    for seconds, changed, limit in calls:
        one = resting.evaluate(at(seconds), values, changed, limit=limit)
        other = stepping.evaluate(at(seconds), values, changed, limit=limit)
        assert (one.commands, one.states) == (other.commands, other.states), seconds
    assert "loop" in one.evaluated and resting.block_of("loop").state.last_time == at(5.2)
    assert resting.states() == stepping.states()


def test_a_sleeping_block_is_awake_after_a_reassertion_and_runs_on():
    # reassert() (a node that has just taken over) hands every state out with no time: a block asleep before it must
    # not go on counting its sleep from a hand-out time it no longer has
    resting, _ = _runners()
    values = {"pv": (50.0, "good"), "sp": (20.0, "good"), "x": (10.0, "good"), "flow": (0.0, "good")}
    values["auto"] = (True, "good")
    resting.evaluate(at(0), values, None)
    assert "loop" in resting.evaluate(at(1), values, []).rested  # asleep from here
    again = resting.reassert()
    assert {c.rule for c in again.commands} >= {"loop"}
    later = [resting.evaluate(at(seconds), values, []) for seconds in (2, 3, 7, 12)]
    assert all(not run.commands for run in later)
    assert "loop" in later[0].evaluated  # awake: its first cycle after the reassertion runs in full


def test_a_resting_block_hands_its_state_out_without_stepping():
    # a saturated PID's bookkeeping (when it last sampled) is handed out every STATE_INTERVAL from the rest that
    # moved it: a step there would leave the same state (the comparisons above), so none is made; an input that
    # moves is stepped at once
    resting, _ = _runners()
    values = {"pv": (50.0, "good"), "sp": (20.0, "good"), "x": (10.0, "good"), "flow": (0.0, "good")}
    values["auto"] = (True, "good")
    resting.evaluate(at(0), values, None)
    block = resting.block_of("loop")
    steps = []
    step = block.step
    block.step = lambda now, **inputs: (steps.append(now), step(now, **inputs))[1]
    handed = []
    for seconds in range(1, 22):
        result = resting.evaluate(at(seconds), values, [])
        if "logic:loop" in result.states:
            assert result.states["logic:loop"]["block"] == block.to_dict() and "loop" in result.rested
            handed.append((seconds, block.state.last_time))
    assert handed == [(seconds, at(seconds)) for seconds in (5, 10, 15, 20)] and steps == []
    values["pv"] = (60.0, "good")
    assert "loop" in resting.evaluate(at(22), values, ["pv"]).evaluated and steps == [at(22)]
