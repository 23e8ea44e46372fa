"""Running rules, pure: compile_rule's refusals, when rules run, commands on change, quality policies, states that
continue on another node, cycles and evaluation order."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from bms.logic.expr import Type
from bms.logic.runner import LogicCommand, RuleRunner, RuleState
from bms.logic.spec import (
    OutputSpec,
    RuleInvalid,
    compile_rule,
    describe_cycle,
    entry_name,
    evaluation_order,
    find_cycle,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TYPES = {"oat": Type.NUMBER, "zone_temp": Type.NUMBER, "zone_sp": Type.NUMBER, "fan": Type.BOOL, "demand": Type.NUMBER}
VALVE = OutputSpec("valve", Type.NUMBER, "float32", low=0.0, high=100.0, relinquish=True)
HEATING = OutputSpec("heating", Type.BOOL, "bool", relinquish=True)
STAGE = OutputSpec("stage", Type.NUMBER, "uint16", low=0.0, high=10.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rule(name="r", kind="expression", outputs=(VALVE,), **fields):
    return compile_rule(name, kind, outputs=list(outputs), types=TYPES, **fields)


def sent(result) -> list[tuple]:
    return [(c.point, c.value, c.reason) for c in result.commands]


def image(**values) -> dict:
    return {name: (value, "good") if not isinstance(value, tuple) else value for name, value in values.items()}


# ---- compile_rule ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "match"),
    [
        ({"expression": "{oat} > 5"}, "output", "the expression gives a bool .*; valve is a number point"),
        ({"expression": "{oat} +"}, "expression", "column 8: expected a value"),
        ({"expression": "{nowhere} * 2"}, "expression", r"column 1: unknown point \{nowhere\}"),
        ({"expression": ""}, "expression", "an expression rule needs an expression"),
        ({"expression": "1", "inputs": {"x": "1"}}, "inputs", "an expression rule has no block inputs"),
        ({"expression": "1", "params": {"kp": 1}}, "params", "an expression rule takes no parameters"),
        ({"expression": "1", "priority": 17}, "priority", "from 1 .* to 16"),
        ({"expression": "1", "cycle_time": 0.01}, "cycle_time", "from 0.1 to 86400 seconds"),
        ({"expression": "1", "quality_policy": "fallback"}, "fallback_value", "needs a fallback value"),
        ({"expression": "1", "quality_policy": "fallback", "fallback_value": 120}, "fallback_value", "above valve's"),
        ({"expression": "1", "fallback_value": 1}, "fallback_value", "the hold policy does not use a fallback"),
        ({"expression": "1", "quality_policy": "sometimes"}, "quality_policy", "one of hold, fallback, relinquish"),
        ({"kind": "pid", "inputs": {"pv": "{zone_temp}"}}, "inputs", "pid needs the input 'sp'"),
        ({"kind": "pid", "inputs": {"pv": "{zone_temp}", "sp": "21", "kp": "2"}}, "inputs", "pid has no input 'kp'"),
        ({"kind": "pid", "inputs": {"pv": "{fan}", "sp": "21"}}, "inputs", "pv: pid input 'pv' takes a number"),
        ({"kind": "pid", "inputs": {"pv": "{oat}", "sp": "2 +"}}, "inputs", "sp: column 4: expected a value"),
        ({"kind": "pid", "inputs": {"pv": "{oat}", "sp": 21}, "expression": "1"}, "expression", "leave this empty"),
        ({"kind": "pid", "inputs": ["{oat}"]}, "inputs", "the inputs are a JSON object"),
        (
            {"kind": "pid", "inputs": {"pv": "{oat}", "sp": 21}, "params": {"kp": -1}},
            "params",
            "'kp' must be at least 0",
        ),
        ({"kind": "pid", "inputs": {"pv": "{oat}", "sp": 21}, "params": {"out_max": 150}}, "params", "above valve's"),
        (
            {"kind": "hysteresis", "inputs": {"x": "{oat}"}, "params": {"on": 1, "off": 2}},
            "output",
            "hysteresis gives a",
        ),
        ({"kind": "sequencer", "inputs": {"demand": "{demand}"}}, "output", "a sequencer writes 2 to 16 points"),
        (
            {"kind": "pid", "inputs": {"pv": "{oat}", "sp": 21}, "params": {"ki": 1}, "cycle_time": 60},
            "cycle_time",
            r"a cycle of 60 s is more than 10 pid sample times \(1 s\)",
        ),
        (
            {"kind": "totalizer", "inputs": {"x": "{oat}"}, "params": {"max_gap": 30}, "cycle_time": 60},
            "cycle_time",
            r"longer than the totalizer's max_gap \(30 s\)",
        ),
    ],
)
def test_compile_rule_refuses_with_the_field_and_a_clear_message(fields, field, match):
    with pytest.raises(RuleInvalid) as caught:
        rule(**fields)
    assert field in caught.value.errors, caught.value.errors
    assert any(re.search(match, message) for message in caught.value.errors[field]), caught.value.errors


def test_compile_rule_refuses_unknown_read_only_and_repeated_outputs():
    read_only = OutputSpec("oat_out", Type.NUMBER, writable=False)
    modbus = OutputSpec("valve2", Type.NUMBER, relinquish=False)
    cases = [
        (["nowhere"], {}, "output", "there is no point named 'nowhere'"),
        ([read_only], {}, "output", "oat_out is read-only: a rule can write only writable points"),
        ([], {}, "output", "name the point the rule writes"),
        ([VALVE, VALVE], {}, "output", "an expression rule writes one point, not 2"),
        ([modbus], {"quality_policy": "relinquish"}, "quality_policy", "cannot release a priority"),
    ]
    for outputs, extra, field, message in cases:
        with pytest.raises(RuleInvalid) as caught:
            rule(expression="1", outputs=outputs, **extra)
        assert any(message in text for text in caught.value.errors.get(field, [])), caught.value.errors


def test_a_compiled_rule_knows_what_it_reads_and_writes():
    spec = rule(kind="pid", inputs={"pv": "{zone_temp}", "sp": "{zone_sp} + 0.5", "auto": "{fan}"}, params={"kp": 2})
    assert spec.points == {"zone_temp", "zone_sp", "fan"}
    assert spec.output_points == ("valve",) and spec.entry == entry_name("r") == "logic:r"
    assert spec.slot_defaults() == {"track": None}
    assert rule(kind="pid", inputs={"pv": "{oat}", "sp": 21.5}, params={"kp": 1}).inputs[1][1].source == "21.5"
    assert hash(spec) == hash(rule(kind="pid", inputs=dict(spec_inputs(spec)), params={"kp": 2}))  # immutable


def spec_inputs(spec):
    return {slot: expression.source for slot, expression in spec.inputs}


# ---- cycles and order --------------------------------------------------------------------------------------------


def test_find_cycle_names_the_rules_and_the_points():
    reads = {"a": ["x"], "b": ["y"], "c": ["z"], "d": ["q"]}
    writes = {"a": ["y"], "b": ["z"], "c": ["x"], "d": ["x"]}
    cycle = find_cycle("a", reads, writes)
    assert cycle == [("a", "y"), ("b", "z"), ("c", "x")]
    assert describe_cycle(cycle) == (
        "the rules would form a cycle: a → b → c → a "
        "(a writes y, which b reads; b writes z, which c reads; c writes x, which a reads)"
    )
    assert find_cycle("d", reads, writes) is None  # d feeds the cycle but is not on it
    assert describe_cycle(find_cycle("s", {"s": ["p"]}, {"s": ["p"]})) == "rule s reads its own output p"


def test_rules_run_after_the_rules_whose_outputs_they_read():
    first = rule("z_first", expression="{oat} * 2", outputs=[OutputSpec("zone_sp", Type.NUMBER)])
    second = rule("a_second", expression="{zone_sp} + 1")
    alone = rule("m_alone", expression="3", outputs=[OutputSpec("other", Type.NUMBER)])
    assert [spec.name for spec in evaluation_order([second, alone, first])] == ["m_alone", "z_first", "a_second"]


# ---- running -----------------------------------------------------------------------------------------------------


def test_an_expression_rule_commands_on_change_only():
    runner = RuleRunner([rule(expression="limit(({zone_sp} - {zone_temp}) * 20, 0, 100)", priority=12)])
    first = runner.evaluate(at(0), image(zone_sp=21.0, zone_temp=20.0))
    assert first.commands == [LogicCommand("r", "valve", 20.0, 12, 1, "value")]
    assert first.commands[0].command_id == "logic:r:1"
    assert first.states == {"logic:r": {"q": "good", "out": [20.0], "n": 1}}
    again = runner.evaluate(at(1), image(zone_sp=21.0, zone_temp=20.0), changed=["zone_temp"])
    assert again.commands == [] and again.states == {}  # nothing changed: no command, no image traffic
    moved = runner.evaluate(at(2), image(zone_sp=21.0, zone_temp=19.0), changed=["zone_temp"])
    assert sent(moved) == [("valve", 40.0, "value")] and moved.commands[0].number == 2
    capped = runner.evaluate(at(3), image(zone_sp=21.0, zone_temp=10.0), changed=["zone_temp"])
    assert sent(capped) == [("valve", 100.0, "value")]


def test_outputs_are_converted_to_what_the_point_takes():
    runner = RuleRunner([rule(expression="{oat} / 3", outputs=[STAGE])])
    assert sent(runner.evaluate(at(0), image(oat=10.0))) == [("stage", 3, "value")]  # uint16: whole
    assert isinstance(runner.state_of("r").out[0], int)
    assert sent(runner.evaluate(at(1), image(oat=100.0), ["oat"])) == [("stage", 10, "value")]  # within its range
    scaled = OutputSpec("damper", Type.NUMBER, "int16", scale=0.5, low=0.0, high=100.0)
    assert scaled.convert(33.3) == 33.5 and scaled.convert(-3) == 0.0 and scaled.convert(1000) == 100.0
    assert HEATING.convert(1.0) is True


def test_the_deadband_holds_back_small_moves_but_not_the_ends():
    runner = RuleRunner([rule(expression="{oat}", deadband=1.0)])
    assert sent(runner.evaluate(at(0), image(oat=50.0)))
    assert sent(runner.evaluate(at(1), image(oat=50.9), ["oat"])) == []
    assert sent(runner.evaluate(at(2), image(oat=51.1), ["oat"])) == [("valve", 51.1, "value")]
    runner.evaluate(at(3), image(oat=99.5), ["oat"])
    assert sent(runner.evaluate(at(4), image(oat=100.0), ["oat"])) == [("valve", 100.0, "value")]  # an end


def test_only_rules_reading_a_changed_point_or_due_run():
    heating = rule("heat", expression="{oat} < 5", outputs=[HEATING], cycle_time=60.0)
    valve = rule("valve", expression="{zone_temp} * 2", cycle_time=10.0)
    runner = RuleRunner([heating, valve])
    values = image(oat=0.0, zone_temp=20.0)
    assert runner.points == {"oat", "zone_temp"}
    assert runner.next_deadline() is None  # nothing ran yet: call now
    assert runner.evaluate(at(0), values, changed=[]).evaluated == ["heat", "valve"]  # first call: every rule
    assert runner.next_deadline() == at(10)
    assert runner.evaluate(at(1), values, changed=["oat"]).evaluated == ["heat"]
    assert runner.evaluate(at(5), values, changed=["unrelated"]).evaluated == []
    assert runner.evaluate(at(10), values, changed=[]).evaluated == ["valve"]  # its cycle
    assert runner.next_deadline() == at(20)
    assert runner.evaluate(at(60), values, changed=[]).evaluated == ["heat", "valve"]
    assert runner.evaluate(at(61), values).evaluated == ["heat", "valve"]  # changed None: everything


def test_a_block_timer_makes_its_rule_due():
    delayed = rule(
        "start", kind="on_delay", inputs={"x": "{oat} < 5"}, params={"delay": 30}, outputs=[HEATING], cycle_time=3600
    )
    runner = RuleRunner([delayed])
    assert sent(runner.evaluate(at(0), image(oat=0.0))) == [("heating", False, "value")]
    assert runner.next_deadline() == at(30)
    assert runner.evaluate(at(29), image(oat=0.0), changed=[]).evaluated == []
    assert sent(runner.evaluate(at(30), image(oat=0.0), changed=[])) == [("heating", True, "value")]


# ---- quality policies --------------------------------------------------------------------------------------------


def test_hold_keeps_the_last_command_and_freezes_the_block():
    pid = rule(kind="pid", inputs={"pv": "{zone_temp}", "sp": "{zone_sp}"}, params={"kp": 0, "ki": 1.0})
    runner = RuleRunner([pid])
    runner.evaluate(at(0), image(zone_temp=20.0, zone_sp=22.0))
    runner.evaluate(at(1), image(zone_temp=20.0, zone_sp=22.0))
    frozen = runner.block_of("r").to_dict()
    bad = runner.evaluate(at(2), image(zone_temp=(20.0, "comm_failure"), zone_sp=22.0))
    assert bad.commands == [] and runner.block_of("r").to_dict() == frozen
    assert bad.states["logic:r"]["q"] == "bad" and bad.states["logic:r"]["why"] == "pv: {zone_temp} is comm_failure"
    good = runner.evaluate(at(3), image(zone_temp=20.0, zone_sp=22.0))
    assert sent(good) == [("valve", 6.0, "value")]  # integrated over 2 s: the bad sample was held, not lost


def test_fallback_commands_the_fallback_value_once():
    runner = RuleRunner([rule(expression="{oat} * 2", quality_policy="fallback", fallback_value=30.0)])
    runner.evaluate(at(0), image(oat=10.0))
    assert sent(runner.evaluate(at(1), image(oat=(10.0, "stale")), ["oat"])) == [("valve", 30.0, "fallback")]
    assert sent(runner.evaluate(at(2), image(oat=(10.0, "stale")), ["oat"])) == []
    assert sent(runner.evaluate(at(3), image(oat=10.0), ["oat"])) == [("valve", 20.0, "value")]


def test_relinquish_releases_the_priority_slot_once_and_takes_it_back():
    runner = RuleRunner([rule(expression="{oat} * 2", quality_policy="relinquish", priority=9)])
    assert runner.evaluate(at(0), image()).commands == []  # never commanded: nothing to release
    runner.evaluate(at(1), image(oat=10.0), ["oat"])
    released = runner.evaluate(at(2), image(oat=(None, "bad")), ["oat"])
    assert released.commands == [LogicCommand("r", "valve", None, 9, 2, "relinquish")]
    assert runner.evaluate(at(3), image(), ["oat"]).commands == []
    assert sent(runner.evaluate(at(4), image(oat=10.0), ["oat"])) == [("valve", 20.0, "value")]


def test_a_command_that_never_reached_the_device_is_commanded_again_with_a_back_off():
    runner = RuleRunner([rule(expression="{oat} * 2")])
    steady = image(oat=10.0)
    assert [c.command_id for c in runner.evaluate(at(0), steady).commands] == ["logic:r:1"]
    # failed at the device: the rule no longer believes it commanded 20, and runs again at once
    assert runner.command_ended("logic:r:1", succeeded=False, now=at(1)) is True
    assert runner.pending and runner.state_of("r").out == [None]
    again = runner.evaluate(at(1), steady, [])
    assert again.commands == [LogicCommand("r", "valve", 20.0, 16, 2, "value")]
    assert again.states["logic:r"]["out"] == [20.0]
    # the second failure in a row waits 2 s, the third 4 s: a dead device is not asked every cycle
    runner.command_ended("logic:r:2", succeeded=False, now=at(2))
    waiting = runner.evaluate(at(2), steady, [])
    assert waiting.commands == []
    # handed out while it waits: a node that takes over knows 20 is not known to be at the device
    assert waiting.states["logic:r"] == {"q": "good", "n": 2}
    assert runner.evaluate(at(3.9), steady, ["oat"]).commands == []
    assert sent(runner.evaluate(at(4), steady, ["oat"])) == [("valve", 20.0, "value")]
    runner.command_ended("logic:r:3", succeeded=False, now=at(5))
    assert runner.evaluate(at(8.9), steady, ["oat"]).commands == []
    assert [c.number for c in runner.evaluate(at(9), steady, ["oat"]).commands] == [4]
    # a success ends the back-off: the next failure is retried at once again
    assert runner.command_ended("logic:r:4", succeeded=True, now=at(10)) is False
    assert runner.state_of("r").out == [20.0]
    assert runner.evaluate(at(11), steady, ["oat"]).commands == []  # steady: nothing to command
    runner.evaluate(at(12), image(oat=11.0), ["oat"])
    assert runner.command_ended("logic:r:5", succeeded=False, now=at(13)) is True
    assert sent(runner.evaluate(at(13), image(oat=11.0), [])) == [("valve", 22.0, "value")]


def test_only_an_outputs_latest_value_command_is_followed():
    runner = RuleRunner([rule(expression="{oat} * 2", quality_policy="relinquish")])
    runner.evaluate(at(0), image(oat=10.0))
    runner.evaluate(at(1), image(oat=11.0), ["oat"])
    # command 1 was overtaken by command 2: its failure changes nothing
    assert runner.command_ended("logic:r:1", succeeded=False, now=at(2)) is False
    assert runner.state_of("r").out == [22.0] and not runner.pending
    # a relinquish that failed leaves nothing to command; unknown rules and ids are ignored
    runner.evaluate(at(3), image(oat=(None, "bad")), ["oat"])
    assert runner.command_ended("logic:r:3", succeeded=False, now=at(4)) is False
    assert runner.command_ended("logic:other:3", succeeded=False, now=at(4)) is False
    assert runner.command_ended("logic:r:x", succeeded=False, now=at(4)) is False
    assert runner.state_of("r").out == [None]


def test_a_new_runner_keeps_following_the_commands_in_flight():
    old = RuleRunner([rule(expression="{oat} * 2")])
    old.evaluate(at(0), image(oat=10.0))
    new = RuleRunner([rule(expression="{oat} * 2")], old.states())
    new.adopt_outcomes(old)
    assert new.command_ended("logic:r:1", succeeded=False, now=at(1)) is True
    assert [c.number for c in new.evaluate(at(1), image(oat=10.0)).commands] == [2]


def test_uncertain_results_are_commanded_and_marked():
    runner = RuleRunner([rule(expression="{oat} * 2")])
    result = runner.evaluate(at(0), image(oat=(10.0, "uncertain")))
    assert sent(result) == [("valve", 20.0, "value")] and result.states["logic:r"]["q"] == "uncertain"


def test_a_sequencer_rule_commands_each_unit():
    units = [OutputSpec(f"pump{index}", Type.BOOL, "bool") for index in (1, 2)]
    seq = rule(
        "pumps",
        kind="sequencer",
        outputs=units,
        inputs={"demand": "{demand}", "available_2": "not {fan}"},
        params={"stage_up": 80, "stage_down": 20, "up_delay": 10, "rotate_hours": 0},
    )
    runner = RuleRunner([seq])
    assert sent(runner.evaluate(at(0), image(demand=90.0, fan=False))) == [
        ("pump1", True, "value"),
        ("pump2", False, "value"),
    ]
    assert sent(runner.evaluate(at(10), image(demand=90.0, fan=False), [])) == [("pump2", True, "value")]
    assert sent(runner.evaluate(at(11), image(demand=90.0, fan=True), ["fan"])) == [("pump2", False, "value")]


# ---- state that continues on another node ------------------------------------------------------------------------


def test_a_node_that_takes_over_continues_blocks_and_command_numbers():
    params = {"kp": 2.0, "ki": 0.1}
    specs = [rule(kind="pid", inputs={"pv": "{zone_temp}", "sp": "{zone_sp}"}, params=params, cycle_time=1.0)]
    active, reference = RuleRunner(specs), RuleRunner(specs)
    replicated = {}
    for second in range(30):
        values = image(zone_temp=20.0 + second * 0.05, zone_sp=22.0)
        replicated.update(active.evaluate(at(second), values).states)  # the image entries, as the standby gets them
        reference.evaluate(at(second), values)
    replicated = json.loads(json.dumps(replicated))
    standby = RuleRunner(specs, replicated)
    assert standby.state_of("r").number == active.state_of("r").number == 30
    values = image(zone_temp=21.6, zone_sp=22.0)
    taken_over = standby.evaluate(at(30), values)
    expected = reference.evaluate(at(30), values)
    assert taken_over.commands == expected.commands  # same value, same number: the same command id
    assert taken_over.commands[0].number == 31
    assert abs(taken_over.commands[0].value - active.state_of("r").out[0]) < 1.0  # no bump


def test_reassert_commands_the_last_values_again():
    runner = RuleRunner([rule(expression="{oat}")])
    runner.evaluate(at(0), image(oat=42.0))
    successor = RuleRunner(runner.specs, runner.states())
    result = successor.reassert()
    assert result.commands == [LogicCommand("r", "valve", 42.0, 16, 2, "reassert")]
    assert result.states["logic:r"]["n"] == 2


def test_a_rule_whose_kind_changed_starts_its_block_afresh():
    old = RuleRunner([rule(kind="hysteresis", inputs={"x": "{oat}"}, params={"on": 1, "off": 0}, outputs=[HEATING])])
    old.evaluate(at(0), image(oat=5.0))
    new_spec = rule(kind="on_delay", inputs={"x": "{oat} > 1"}, params={"delay": 10}, outputs=[HEATING])
    new = RuleRunner([new_spec], old.states())
    assert new.block_of("r").to_dict() == {} and new.state_of("r").out == [True]
    corrupt = RuleRunner([new_spec], {"logic:r": {"k": "on_delay", "block": {"pending_since": "soon"}}})
    assert corrupt.block_of("r").to_dict() == {}


def test_rule_state_round_trips():
    state = RuleState(kind="pid", block={"integral": 1.5}, out=[3.0], number=7, quality="bad", reason="pv: x")
    assert RuleState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert RuleState.from_dict(None) == RuleState()


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        RuleRunner([]).evaluate(datetime(2026, 3, 1), {})


def test_a_new_pid_rule_starts_from_its_output_points_present_value():
    pid = rule(kind="pid", inputs={"pv": "{zone_temp}", "sp": "{zone_sp}"}, params={"kp": 2.0, "ki": 0.1})
    runner = RuleRunner([pid])
    first = runner.evaluate(at(0), image(zone_temp=20.0, zone_sp=21.0, valve=37.0))
    assert sent(first) == [("valve", 37.0, "value")]  # not kp * e = 2: the valve stays where it is
    assert sent(runner.evaluate(at(1), image(zone_temp=20.0, zone_sp=21.0, valve=37.0), [])) == [
        ("valve", pytest.approx(37.1), "value")
    ]
    unknown = RuleRunner([pid]).evaluate(at(0), image(zone_temp=20.0, zone_sp=21.0, valve=(37.0, "comm_failure")))
    assert sent(unknown) == [("valve", 2.0, "value")]  # the output point's value is not usable: P alone
