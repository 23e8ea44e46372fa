"""The logic rules travel to the standby in the configuration dump and are applied whole (what docs/logic.md
asks redundancy.configsync to do); the standby's engine then loads the same specs."""

from django.db import transaction

from bms.logic.models import Rule
from bms.logic.replication import LOGIC_MODELS, LOGIC_TABLES, dump_logic
from bms.logic.store import read_rule_specs
from redundancy.configsync import _replace, _reset_sequences, hash_dump, pack_dump, unpack_dump


def apply_like_configsync(dump: dict) -> None:
    with transaction.atomic():
        for key, model, unique in LOGIC_TABLES:
            _replace(model, dump.get(key, []), unique)
        _reset_sequences(LOGIC_MODELS)


def test_the_rules_travel_through_the_dump_and_are_applied_whole(points):
    Rule(name="heat", expression="limit(({zone1_sp} - {zone1_temp}) * 20, 0, 100)", output="heat_demand").save()
    Rule(
        name="valve",
        kind="pid",
        inputs={"pv": "{zone1_temp}", "sp": "{zone1_sp}"},
        params={"kp": 2.5, "ki": 0.05, "anti_windup": "back_calculation"},
        output="ahu1_valve",
        priority=10,
        quality_policy="fallback",
        fallback_value=20.0,
    ).save()
    wanted = dump_logic()
    packed = unpack_dump(pack_dump(wanted))
    assert packed == wanted
    specs = read_rule_specs()

    # the standby's own rules differ: a stale rule, a renamed one, another's name moved
    Rule(name="stale", expression="1", output="zone2_sp").save()
    Rule.objects.filter(name="heat").update(name="was-heat")
    Rule.objects.filter(name="valve").update(params={"kp": 1})
    assert dump_logic() != wanted

    apply_like_configsync(packed)
    assert dump_logic() == wanted
    assert hash_dump(dump_logic()) == hash_dump(wanted)
    assert read_rule_specs() == specs
    assert Rule(name="new", expression="2", output="zone2_sp").save() is None
    assert Rule.objects.get(name="new").pk > max(row["id"] for row in wanted["logic_rules"])


def test_an_empty_dump_from_a_partner_without_logic_empties_the_table(points):
    Rule(name="heat", expression="1", output="zone1_sp").save()
    apply_like_configsync({})
    assert not Rule.objects.exists()
