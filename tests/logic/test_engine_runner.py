"""What the logic engine relies on in the runner, pure: slices (``limit``, ``deadline``), timers, command ids."""

import time
from datetime import UTC, datetime, timedelta

from bms.logic.expr import Type
from bms.logic.runner import CLOCK_EVERY, MAX_COMMAND_ID, RuleRunner, command_id
from bms.logic.spec import OutputSpec, compile_rule

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TYPES = {f"t{i}": Type.NUMBER for i in range(100)} | {"run": Type.BOOL}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def output(name: str, kind: Type = Type.NUMBER) -> OutputSpec:
    return OutputSpec(name, kind, "bool" if kind is Type.BOOL else "float32", relinquish=True)


def rules(count: int, cycle: float = 60.0) -> list:
    return [
        compile_rule(
            f"r{i}", "expression", expression=f"{{t{i}}} * 2", outputs=[output(f"o{i}")], types=TYPES, cycle_time=cycle
        )
        for i in range(count)
    ]


def image(**values) -> dict:
    return {name: (value, "good") for name, value in values.items()}


def test_a_deadline_ends_a_slice_at_the_turns_budget_and_keeps_the_rest_due_in_order():
    """The engine's logic slices end where the loop's turn budget does (bms/engine/turns.py), like the alarm and
    trend slices: counted in rules only, a slice that began late in a turn ran its 500 rules past the turn's end."""
    count = 3 * CLOCK_EVERY + 5
    runner = RuleRunner(rules(count))
    values = image(**{f"t{i}": float(i) for i in range(count)})
    gone = time.perf_counter()  # the turn's budget is used up already: each slice runs one clock period of rules
    slices = [runner.evaluate(at(0), values, None, limit=500, deadline=gone)]
    while runner.pending:
        slices.append(runner.evaluate(at(0), values, [], limit=500, deadline=gone))
    assert [len(s.evaluated) for s in slices] == [CLOCK_EVERY, CLOCK_EVERY, CLOCK_EVERY, 5]
    order = [spec.name for spec in runner.specs]
    assert sorted(order) == sorted(f"r{i}" for i in range(count))
    assert [name for s in slices for name in s.evaluated] == order  # in evaluation order, each once
    assert [c.rule for s in slices for c in s.commands] == order
    later = time.perf_counter() + 60  # a budget that does not run out: one slice, as with the limit alone
    values["t7"] = (70.0, "good")
    values["t2"] = (20.0, "good")
    last = runner.evaluate(at(1), values, ["t7", "t2"], limit=500, deadline=later)
    assert last.evaluated == ["r2", "r7"] and not runner.pending


def test_a_limit_runs_the_due_rules_in_slices_in_evaluation_order_and_none_is_lost():
    runner = RuleRunner(rules(5))
    values = image(**{f"t{i}": float(i) for i in range(5)})
    first = runner.evaluate(at(0), values, None, limit=2)
    assert first.evaluated == ["r0", "r1"] and runner.pending
    second = runner.evaluate(at(0), values, [], limit=2)
    assert second.evaluated == ["r2", "r3"] and runner.pending
    third = runner.evaluate(at(0), values, [], limit=2)
    assert third.evaluated == ["r4"] and not runner.pending
    assert [c.point for r in (first, second, third) for c in r.commands] == ["o0", "o1", "o2", "o3", "o4"]
    # a change while a slice is waiting joins the waiting set once
    values["t3"] = (7.0, "good")
    values["t1"] = (9.0, "good")
    fourth = runner.evaluate(at(1), values, ["t3", "t1", "t3"], limit=1)
    fifth = runner.evaluate(at(1), values, [], limit=1)
    assert (fourth.evaluated, fifth.evaluated, runner.pending) == (["r1"], ["r3"], False)


def test_a_rule_due_while_others_wait_takes_its_place_in_evaluation_order_once():
    """The waiting rules are a queue in evaluation order: one made due again while waiting is not queued twice,
    one that ran and is due again goes ahead of the rules still waiting behind it."""
    runner = RuleRunner(rules(6))
    values = image(**{f"t{i}": float(i) for i in range(6)})
    first = runner.evaluate(at(0), values, None, limit=2)
    assert first.evaluated == ["r0", "r1"]
    values["t0"] = (10.0, "good")
    values["t4"] = (40.0, "good")
    second = runner.evaluate(at(1), values, ["t4", "t0", "t4"], limit=3)
    third = runner.evaluate(at(1), values, [], limit=3)
    assert (second.evaluated, third.evaluated, runner.pending) == (["r0", "r2", "r3"], ["r4", "r5"], False)
    assert [c.value for c in second.commands + third.commands] == [20.0, 4.0, 6.0, 80.0, 10.0]


def test_only_due_rules_run_and_the_next_deadline_is_the_earliest_cycle_or_timer():
    specs = [
        *rules(2, cycle=10.0),
        compile_rule(
            "delayed",
            "on_delay",
            inputs={"x": "{run}"},
            params={"delay": 3},
            outputs=[output("o9", Type.BOOL)],
            types=TYPES,
            cycle_time=60.0,
        ),
    ]
    runner = RuleRunner(specs)
    values = image(t0=1.0, t1=2.0, run=True)
    assert runner.next_deadline() is None  # before the first call: call now
    assert sorted(runner.evaluate(at(0), values).evaluated) == ["delayed", "r0", "r1"]
    assert runner.next_deadline() == at(3)  # the on-delay's timer, before the cycles at 10 s
    assert runner.evaluate(at(1), values, []).evaluated == []  # nothing due, nothing changed
    fired = runner.evaluate(at(3), values, [])
    assert fired.evaluated == ["delayed"] and [(c.point, c.value) for c in fired.commands] == [("o9", True)]
    assert runner.next_deadline() == at(10)
    assert sorted(runner.evaluate(at(10), values, []).evaluated) == ["r0", "r1"]
    assert runner.evaluate(at(10.5), values, ["t1", "elsewhere"]).evaluated == ["r1"]  # a change: at once


def test_command_ids_fit_the_command_path_whatever_the_rule_name():
    assert command_id("zone1_loop", 12) == "logic:zone1_loop:12"
    long = command_id("x" * 60, 123456)
    assert long.startswith("logic:h") and long.endswith(":123456") and len(long) <= MAX_COMMAND_ID
    assert command_id("x" * 60, 1) != command_id("y" * 60, 1)
    assert command_id("zone 1/loop", 1).startswith("logic:h")  # characters the command path refuses
