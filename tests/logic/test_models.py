"""Logic rules in the database: valid rules save, bad ones are refused at save with a clear message (unknown
points, types, outputs, parameters, policies, conflicts, cycles), the revision moves, the loader, the admin."""

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError

from bms.logic.models import Rule
from bms.logic.runner import RuleRunner
from bms.logic.spec import RuleInvalid
from bms.logic.store import read_rule_specs
from bms.points.models import ConfigRevision, Point
from bms.sites.models import default_site_id

PID_INPUTS = {"pv": "{zone1_temp}", "sp": "{zone1_sp}"}


def make(name: str = "r1", **fields) -> Rule:
    fields.setdefault("kind", "expression")
    return Rule(name=name, **fields)


def refused(rule: Rule, field: str, match: str) -> None:
    """Refused by full_clean and save() alike, with ``match`` in ``field``'s messages; nothing stored."""
    with pytest.raises(ValidationError) as caught:
        rule.full_clean()
    messages = caught.value.message_dict.get(field, [])
    assert any(match in message for message in messages), caught.value.message_dict
    count = Rule.objects.count()
    with pytest.raises(ValidationError):
        rule.save()
    assert Rule.objects.count() == count


def test_valid_rules_of_every_kind_save(points):
    make("heat", expression="limit(({zone1_sp} - {zone1_temp}) * 20, 0, 100)", output="heat_demand").save()
    make("fan", expression="{oat} > 25 or {zone1_temp} > 26", output="ahu1_fan", priority=12).save()
    make("valve", kind="pid", inputs=PID_INPUTS, params={"kp": 4, "ki": 0.1}, output="ahu1_valve", priority=10).save()
    make("cool", kind="hysteresis", inputs={"x": "{zone2_temp}"}, params={"on": 26, "off": 24}, output="pump1").save()
    make("delayed", kind="on_delay", inputs={"x": "{ahu1_running}"}, params={"delay": 30}, output="pump2").save()
    make("ramp", kind="rate_limit", inputs={"x": "{oat}"}, params={"rise": 0.5}, output="zone2_sp").save()
    make("latched", kind="latch", inputs={"set": "{oat} < 0", "reset": "{oat} > 5"}, output="ahu1_enable").save()
    make("count", kind="totalizer", inputs={"x": "{oat}"}, params={"per": 3600}, output="stage").save()
    make(
        "pumps",
        kind="sequencer",
        inputs={"demand": "{heat_demand}", "available_2": "not {ahu1_running}"},
        params={"stage_up": 90, "stage_down": 30},
        output="pump3, ahu1_fan",
        priority=14,
    ).save()
    assert Rule.objects.count() == 9


def test_unknown_points_are_named_with_their_column(points):
    refused(make(expression="{zone9_temp} + {zone8} + 1", output="zone1_sp"), "expression", "column 1: unknown points")
    refused(make(expression="{zone9_temp} + 1", output="zone1_sp"), "expression", "unknown point {zone9_temp}")
    refused(
        make(kind="pid", inputs={"pv": "{zone1_temp}", "sp": "{nosuch_sp}"}, output="ahu1_valve"),
        "inputs",
        "sp: column 1: unknown point {nosuch_sp}",
    )
    refused(make(expression="1", output="nosuch"), "output", "there is no point named 'nosuch'")
    refused(make(expression="1", output=""), "output", "This field cannot be blank")


def test_outputs_must_be_writable(points):
    refused(make(expression="1", output="zone1_temp"), "output", "zone1_temp is read-only: a rule can write only")


def test_type_errors_are_refused_with_their_column(points):
    refused(make(expression="{zone1_temp} + {ahu1_running}", output="zone1_sp"), "expression", "column 16: '+' needs")
    refused(make(expression="{zone1_temp} > 20", output="zone1_sp"), "output", "gives a bool (true/false); zone1_sp is")
    refused(make(expression="{zone1_temp} * 2", output="ahu1_fan"), "output", "gives a number; ahu1_fan is a bool")
    refused(
        make(kind="pid", inputs={"pv": "{ahu1_running}", "sp": "21"}, output="ahu1_valve"),
        "inputs",
        "pv: pid input 'pv' takes a number",
    )
    refused(
        make(kind="hysteresis", inputs={"x": "{oat}"}, params={"on": 1, "off": 0}, output="zone1_sp"),
        "output",
        "hysteresis gives a bool",
    )


def test_syntax_errors_are_refused_with_their_column(points):
    refused(make(expression="({oat} + 1", output="zone1_sp"), "expression", "column 11: expected ')' to close")
    refused(make(expression="", output="zone1_sp"), "expression", "an expression rule needs an expression")


def test_block_parameters_and_inputs_are_checked(points):
    refused(make(kind="pid", inputs=PID_INPUTS, params={"kp": 1, "kq": 2}, output="ahu1_valve"), "params", "'kq'")
    refused(make(kind="pid", inputs={"pv": "{zone1_temp}"}, output="ahu1_valve"), "inputs", "pid needs the input 'sp'")
    refused(
        make(kind="pid", inputs=PID_INPUTS, params={"out_max": 150}, output="ahu1_valve"),
        "params",
        "pid out_max 150 is above ahu1_valve's highest value 100",
    )
    refused(
        make(kind="sequencer", inputs={"demand": "{oat}"}, params={"stage_up": 9, "stage_down": 3}, output="pump1"),
        "output",
        "a sequencer writes 2 to 16 points",
    )
    refused(make(kind="pid", inputs=PID_INPUTS, output="ahu1_valve, pump1"), "output", "a pid rule writes one point")


def test_priority_cycle_time_and_quality_policy_are_checked(points):
    refused(make(expression="1", output="zone1_sp", priority=0), "priority", "from 1 (highest) to 16")
    refused(make(expression="1", output="zone1_sp", priority=17), "priority", "from 1 (highest) to 16")
    rule = make(expression="1", output="zone1_sp", priority=17)
    with pytest.raises(ValidationError) as caught:
        rule.full_clean()
    assert len(caught.value.message_dict["priority"]) == 1  # said once, not by the field and the rule check both
    refused(make(expression="1", output="zone1_sp", cycle_time=0.0), "cycle_time", "greater than or equal to 0.1")
    refused(make(expression="1", output="zone1_sp", quality_policy="fallback"), "fallback_value", "needs a fallback")
    refused(
        make(expression="{oat} > 1", output="ahu1_fan", quality_policy="fallback", fallback_value=2),
        "fallback_value",
        "ahu1_fan is a bool point: the fallback is 1 (true) or 0 (false)",
    )
    refused(
        make(expression="1", output="zone1_sp", quality_policy="relinquish"),
        "quality_policy",
        "zone1_sp's device cannot release a priority (relinquish)",
    )
    make(expression="{zone1_temp}", output="ahu1_valve", quality_policy="relinquish").save()  # BACnet can


def test_two_rules_may_not_write_one_point_at_one_priority(points):
    make("first", expression="{oat}", output="zone1_sp", priority=12).save()
    refused(make("second", expression="{oat} + 1", output="zone1_sp", priority=12), "priority", "rule first already")
    make("second", expression="{oat} + 1", output="zone1_sp", priority=13).save()  # another slot of the array
    make("third", expression="{oat} + 2", output="zone1_sp", priority=12, enabled=False).save()  # disabled: fine


def test_cycles_between_rules_are_refused_naming_the_cycle(points):
    make("a", expression="{zone1_temp} + 1", output="zone1_sp").save()
    make("b", expression="{zone1_sp} * 2", output="zone2_sp").save()
    make("c", expression="{zone2_sp} > 5", output="ahu1_fan").save()  # a chain is fine
    closing = make("d", kind="pid", inputs={"pv": "{zone2_sp}", "sp": "{oat}"}, output="heat_demand")
    closing.save()  # still no cycle: nothing reads heat_demand
    back = Rule.objects.get(name="a")
    back.expression = "{zone1_temp} + {heat_demand}"
    refused(
        back,
        "__all__",
        "the rules would form a cycle: a → b → d → a (a writes zone1_sp, which b reads; "
        "b writes zone2_sp, which d reads; d writes heat_demand, which a reads)",
    )
    refused(make("self", expression="{zone2_sp} + 1", output="zone2_sp", priority=9), "expression", "reads its own")
    back.enabled = False
    back.save()  # a disabled rule takes part in no cycle


def test_saving_and_deleting_bump_the_configuration_revision(points, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        before = ConfigRevision.current()
        rule = make(expression="{oat}", output="zone1_sp")
        rule.save()
    assert ConfigRevision.current() > before
    with django_capture_on_commit_callbacks(execute=True):
        before = ConfigRevision.current()
        rule.delete()
    assert ConfigRevision.current() > before


def test_the_loader_builds_specs_in_order_and_reports_rules_that_can_no_longer_run(points):
    make("b_reads", expression="{zone1_sp} * 2", output="zone2_sp").save()
    make("z_writes", expression="{oat} + 1", output="zone1_sp").save()
    make("off", expression="{oat}", output="stage", enabled=False).save()
    make("valve", kind="pid", inputs=PID_INPUTS, params={"kp": 2}, output="ahu1_valve").save()
    make("broken", expression="{zone2_temp} + 1", output="heat_demand").save()
    make("no_device", expression="true", output="pump1").save()
    Point.objects.filter(name="zone2_temp").update(data_type="bool")  # behind the rule's back
    Point.objects.filter(name="pump1").update(enabled=False)
    problems: list[str] = []
    specs = read_rule_specs(problems)
    assert [spec.name for spec in specs] == ["z_writes", "b_reads", "valve"]  # valve reads zone1_sp too
    assert problems == [
        "logic rule broken cannot run: expression: column 1: '+' needs numbers; {zone2_temp} is a bool point",
        "logic rule no_device cannot run: its output pump1 is disabled",
    ]
    valve = next(spec for spec in specs if spec.name == "valve")
    assert valve.outputs[0].relinquish and (valve.outputs[0].low, valve.outputs[0].high) == (0.0, 100.0)
    stage = make("stage_rule", expression="1", output="stage")
    assert stage.build_spec({"stage": points["stage"]}).outputs[0].high == 65535  # the uint16 register
    result = RuleRunner(specs).evaluate(
        datetime(2026, 3, 1, tzinfo=UTC),
        {"oat": (4.0, "good"), "zone1_temp": (20.0, "good"), "zone1_sp": (21.0, "good")},
    )
    assert {(c.rule, c.point, c.value) for c in result.commands} == {
        ("valve", "ahu1_valve", 2.0),
        ("z_writes", "zone1_sp", 5.0),
        ("b_reads", "zone2_sp", 42.0),
    }


def test_the_admin_lists_adds_and_refuses_rules(points, admin_client):
    make("heat", expression="{zone1_sp} - {zone1_temp}", output="heat_demand").save()
    assert admin_client.get("/admin/logic/rule/").status_code == 200
    assert "heat" in admin_client.get("/admin/logic/rule/?kind=expression").content.decode()
    page = admin_client.get("/admin/logic/rule/add/")
    assert page.status_code == 200 and "sequencer" in page.content.decode()
    data = {
        "name": "valve",
        "site": str(default_site_id()),  # the admin form asks for the site (the default one here)
        "description": "",
        "enabled": "on",
        "kind": "pid",
        "expression": "",
        "inputs": '{"pv": "{zone1_temp}", "sp": "{zone1_sp}"}',
        "params": '{"kp": 2, "ki": 0.05}',
        "output": "ahu1_valve",
        "priority": "10",
        "cycle_time": "1",
        "output_deadband": "0.5",
        "quality_policy": "hold",
        "fallback_value": "",
    }
    response = admin_client.post("/admin/logic/rule/add/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Rule.objects.get(name="valve").params == {"kp": 2, "ki": 0.05}
    response = admin_client.post("/admin/logic/rule/add/", {**data, "name": "bad", "inputs": '{"pv": "{nope}"}'})
    assert response.status_code == 200
    assert "unknown point {nope}" in response.content.decode()


class Untouchable:
    """A point of the loader's map that no rule names: building a spec must not look at it."""

    @property
    def data_type(self) -> str:
        raise AssertionError("a rule's spec looked at a point it does not name")


def test_a_spec_looks_only_at_the_points_its_rule_names(points):
    """The engine's loader passes every point any enabled rule names; building each rule's types from all of them
    made a reload quadratic (5,000 rules: 80 s on the engine's database thread)."""
    rule = make("sum", expression="{zone1_temp} + {oat}", output="zone2_sp")
    named = {name: points[name] for name in ("zone1_temp", "oat", "zone2_sp")}
    others = {f"elsewhere_{number}": Untouchable() for number in range(1000)}
    spec = rule.build_spec({**others, **named})
    assert spec.points == {"zone1_temp", "oat"} and spec.output_points == ("zone2_sp",)
    refused_spec = make("bad", expression="{elsewhere_7x} + 1", output="zone2_sp")
    with pytest.raises(RuleInvalid, match="unknown point"):
        refused_spec.build_spec({**others, **named})
