"""The ISA-18.2 alarm state machine, pure: every transition, delays, shelving, suppression, out of service,
re-alarm, chattering and the serialised state. Times are passed in; nothing sleeps."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from bms.alarms.states import (
    Alarm,
    AlarmActionRefused,
    AlarmConfig,
    AlarmState,
    State,
    TransitionKind,
    acknowledge_many,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
R = TransitionKind


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def seen(transitions) -> list[tuple[str, str]]:
    return [(t.kind.value, t.state) for t in transitions]


def alarm(**config) -> Alarm:
    return Alarm("ahu1_supply_temp.high", AlarmConfig(**config))


def raised(**config) -> Alarm:
    """An alarm raised at 0 s (or at its on-delay)."""
    a = alarm(**config)
    transitions = a.update(True, at(0), 31.0) + a.tick(at(a.config.on_delay))
    assert seen(transitions) == [("raised", "active_unacked")]
    return a


# ---- the four states ------------------------------------------------------------------------------------


def test_raise_acknowledge_return():
    a = alarm()
    (t,) = a.update(True, at(0), 31.0)
    assert (t.alarm, t.kind, t.state, t.time, t.value) == (
        "ahu1_supply_temp.high",
        R.RAISED,
        "active_unacked",
        at(0),
        31.0,
    )
    (t,) = a.acknowledge(at(5), "op", "looking")
    assert (t.kind, t.state, t.user, t.comment, t.time) == (R.ACKNOWLEDGED, "active_acked", "op", "looking", at(5))
    assert seen(a.update(False, at(10), 24.0)) == [("returned", "normal")]
    assert a.state.state is State.NORMAL


def test_return_before_acknowledge_waits_in_rtn_unacked():
    a = raised()
    assert seen(a.update(False, at(10), 24.0)) == [("returned", "rtn_unacked")]
    assert seen(a.acknowledge(at(20), "op")) == [("acknowledged", "normal")]


def test_an_alarm_that_comes_back_before_it_is_acknowledged_is_raised_again():
    a = raised()
    a.update(False, at(10))
    assert seen(a.update(True, at(20), 32.0)) == [("raised", "active_unacked")]


def test_the_same_condition_twice_raises_once_and_nothing_to_acknowledge_is_nothing():
    a = raised()
    assert a.update(True, at(1), 31.5) == []
    assert a.update(True, at(2), 32.0) == []
    assert len(a.acknowledge(at(3), "op")) == 1
    assert a.acknowledge(at(4), "op2") == []  # a second operator (or the other node) acknowledging again
    assert alarm().acknowledge(at(0), "op") == []  # a normal alarm
    with pytest.raises(ValueError, match="needs the user"):
        a.acknowledge(at(5), "")


def test_an_alarm_without_acknowledgement_goes_straight_to_acked_and_back_to_normal():
    a = alarm(ack_required=False, realarm_seconds=10)
    assert seen(a.update(True, at(0))) == [("raised", "active_acked")]
    assert a.tick(at(100)) == []  # nothing to re-alarm
    assert seen(a.update(False, at(101))) == [("returned", "normal")]


def test_acknowledge_many_at_once_with_one_comment():
    first, second, third = raised(), raised(), alarm()
    second.update(False, at(5))
    done = acknowledge_many([first, second, third], at(10), "op", "known, maintenance")
    assert seen(done) == [("acknowledged", "active_acked"), ("acknowledged", "normal")]
    assert {(t.user, t.comment) for t in done} == {("op", "known, maintenance")}


def test_times_must_be_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        alarm().update(True, datetime(2026, 1, 1))


# ---- on- and off-delays ----------------------------------------------------------------------------------


def test_on_delay_raises_at_the_source_time_plus_the_delay():
    a = alarm(on_delay=10)
    assert a.update(True, at(0), 31.0) == []
    assert a.next_deadline() == at(10)
    assert a.update(True, at(5), 32.0) == []
    assert a.tick(at(9.999)) == []
    (t,) = a.tick(at(12))  # a late tick: the alarm is raised at the time it was due
    assert (t.kind, t.time, t.value) == (R.RAISED, at(10), 32.0)
    assert a.tick(at(13)) == []


def test_a_sample_after_the_delay_fires_it_first():
    a = alarm(on_delay=10)
    a.update(True, at(0), 31.0)
    transitions = a.update(False, at(15), 20.0)
    assert [(t.kind, t.time, t.value) for t in transitions] == [(R.RAISED, at(10), 31.0), (R.RETURNED, at(15), 20.0)]


def test_a_condition_shorter_than_the_on_delay_raises_nothing():
    a = alarm(on_delay=10)
    a.update(True, at(0))
    a.update(False, at(5))
    assert a.next_deadline() is None
    assert a.tick(at(60)) == []
    assert a.state.state is State.NORMAL


def test_off_delay_returns_only_when_the_condition_stayed_away():
    a = raised(off_delay=10)
    assert a.update(False, at(20)) == []
    assert a.update(True, at(25)) == []  # back before the off-delay: still the same alarm
    assert a.update(False, at(26)) == []
    assert a.tick(at(35.9)) == []
    (t,) = a.tick(at(40))
    assert (t.kind, t.time) == (R.RETURNED, at(36))


def test_an_on_delay_running_on_one_node_fires_once_at_the_right_time_on_another():
    active_node = alarm(on_delay=30)
    active_node.update(True, at(0), 31.0)
    active_node.tick(at(20))  # the node dies 20 s into the delay; its state was replicated
    wire = json.loads(json.dumps(active_node.state.to_dict()))
    new_node = Alarm("ahu1_supply_temp.high", AlarmConfig(on_delay=30), AlarmState.from_dict(wire))
    assert new_node.tick(at(25)) == []  # takeover at 25 s: the delay does not start again
    assert [(t.kind, t.time) for t in new_node.tick(at(31))] == [(R.RAISED, at(30))]
    assert new_node.tick(at(40)) == []


# ---- shelving -------------------------------------------------------------------------------------------


def test_shelving_hides_the_alarm_for_15_minutes_then_raises_it_again_if_still_active():
    a = raised()
    (t,) = a.shelve(at(10), "op", comment="sensor replaced tomorrow")
    assert (t.kind, t.state, t.user, t.comment) == (R.SHELVED, "shelved", "op", "sensor replaced tomorrow")
    assert a.state.shelved_until == at(10 + 15 * 60)
    assert a.update(False, at(20)) == [] and a.update(True, at(30)) == []  # silent while shelved
    assert a.acknowledge(at(40), "op") == []
    transitions = a.tick(at(10 + 15 * 60 + 5))
    assert [(t.kind.value, t.state, t.time, t.comment) for t in transitions] == [
        ("unshelved", "normal", at(910), "shelving expired"),
        ("raised", "active_unacked", at(910), ""),
    ]


def test_shelving_that_expires_after_the_alarm_returned_leaves_it_normal():
    a = raised()
    a.shelve(at(10), "op", seconds=60)
    a.update(False, at(20))
    assert seen(a.tick(at(70))) == [("unshelved", "normal")]


def test_shelving_is_capped_at_the_maximum():
    a = raised(shelve_max=3600)
    a.shelve(at(0), "op", seconds=24 * 3600)
    assert a.state.shelved_until == at(3600)
    assert a.next_deadline() == at(3600)
    with pytest.raises(ValueError, match="positive number of seconds"):
        a.shelve(at(1), "op", seconds=0)


def test_shelving_until_normal_ends_when_the_alarm_returns_and_is_capped_too():
    a = raised(shelve_max=600)
    a.shelve(at(0), "op", until_normal=True)
    (t,) = a.update(False, at(100))
    assert (t.kind, t.state, t.time, t.comment) == (R.UNSHELVED, "normal", at(100), "returned to normal")
    assert a.state.shelved_until is None

    b = raised(shelve_max=600)
    b.shelve(at(0), "op", seconds=10_000, until_normal=True)
    assert seen(b.tick(at(600))) == [("unshelved", "normal"), ("raised", "active_unacked")]


def test_unshelving_by_hand_and_shelving_again():
    a = raised()
    a.shelve(at(0), "op", seconds=60)
    a.shelve(at(30), "op", seconds=600)  # again: a new end
    assert a.state.shelved_until == at(630)
    assert seen(a.unshelve(at(40), "op2", "fixed")) == [("unshelved", "normal"), ("raised", "active_unacked")]
    assert a.unshelve(at(50), "op2") == []


def test_refused_shelving_changes_nothing():
    a = alarm(on_delay=10)
    a.update(False, at(0))
    before = a.state.to_dict()
    with pytest.raises(AlarmActionRefused, match="not active"):
        a.shelve(at(5), "op", until_normal=True)
    assert a.state.to_dict() == before
    b = raised()
    b.set_out_of_service(True, at(1), "eng")
    with pytest.raises(AlarmActionRefused, match="out of service"):
        b.shelve(at(2), "op")
    assert b.state.shelved_until is None


# ---- suppression by design and out of service ------------------------------------------------------------


def test_suppression_by_design_hides_the_alarm_and_raises_it_when_it_ends_if_still_active():
    a = raised()
    assert seen(a.set_suppressed(True, at(10))) == [("suppressed", "suppressed")]
    assert a.set_suppressed(True, at(11)) == []
    assert a.update(False, at(20)) == [] and a.update(True, at(30)) == []
    assert seen(a.set_suppressed(False, at(40))) == [("unsuppressed", "normal"), ("raised", "active_unacked")]


def test_after_suppression_the_on_delay_runs_again_before_the_alarm_counts():
    a = raised(on_delay=30)  # raised at 30 s (on-delay), with the fan off...
    a.set_suppressed(True, at(40))  # ...the suppression point (fan off) is true
    assert seen(a.set_suppressed(False, at(100))) == [("unsuppressed", "normal")]  # fan starts: flow takes time
    assert a.tick(at(129)) == []
    assert [(t.kind, t.time) for t in a.tick(at(130))] == [(R.RAISED, at(130))]

    b = raised(on_delay=30)
    b.set_suppressed(True, at(40))
    b.set_suppressed(False, at(100))
    b.update(False, at(110))  # the flow came up within the on-delay: no alarm
    assert b.tick(at(200)) == []


def test_out_of_service_hides_the_alarm_and_records_the_engineer():
    a = raised()
    (t,) = a.set_out_of_service(True, at(10), "eng", "sensor removed")
    assert (t.kind, t.state, t.user, t.comment) == (R.OUT_OF_SERVICE, "out_of_service", "eng", "sensor removed")
    assert a.update(False, at(20)) == [] and a.update(True, at(30)) == []
    assert a.acknowledge(at(31), "op") == []
    assert seen(a.set_out_of_service(False, at(40), "eng")) == [
        ("in_service", "normal"),
        ("raised", "active_unacked"),
    ]
    a.update(False, at(50))
    a.acknowledge(at(51), "op")
    a.set_out_of_service(True, at(60), "eng")
    assert seen(a.set_out_of_service(False, at(70), "eng")) == [("in_service", "normal")]


def test_out_of_service_outranks_suppressed_outranks_shelved():
    a = raised()
    a.shelve(at(1), "op", seconds=600)
    assert seen(a.set_suppressed(True, at(2))) == [("suppressed", "suppressed")]
    assert seen(a.set_out_of_service(True, at(3), "eng")) == [("out_of_service", "out_of_service")]
    assert seen(a.set_out_of_service(False, at(4), "eng")) == [("in_service", "suppressed")]
    assert seen(a.set_suppressed(False, at(5))) == [("unsuppressed", "shelved")]  # still shelved: not raised
    assert seen(a.unshelve(at(6), "op")) == [("unshelved", "normal"), ("raised", "active_unacked")]


# ---- re-alarm ---------------------------------------------------------------------------------------------


def test_realarm_repeats_while_active_and_unacknowledged():
    a = raised(realarm_seconds=60)
    assert a.tick(at(59)) == []
    assert [(t.kind, t.time, t.state) for t in a.tick(at(60))] == [(R.REALARM, at(60), "active_unacked")]
    assert [t.time for t in a.tick(at(130))] == [at(120)]
    assert [t.time for t in a.tick(at(1000))] == [at(960)]  # a late tick: one row, not fourteen
    a.acknowledge(at(1001), "op")
    assert a.next_deadline() is None
    assert a.tick(at(5000)) == []


def test_realarm_stops_when_the_alarm_returns():
    a = raised(realarm_seconds=10, off_delay=20)
    a.update(False, at(5))  # returns at 25 s
    transitions = a.tick(at(100))
    assert [(t.kind, t.time) for t in transitions] == [(R.REALARM, at(20)), (R.RETURNED, at(25))]
    assert a.tick(at(200)) == []


def test_no_realarm_while_shelved():
    a = raised(realarm_seconds=10)
    a.shelve(at(5), "op", seconds=100)
    assert seen(a.tick(at(50))) == []


# ---- chattering ---------------------------------------------------------------------------------------------


def test_chattering_is_marked_once_and_summarised_until_quiet_for_a_window():
    a = alarm(chatter_count=3, chatter_window=60)
    transitions = []
    for second in range(11):  # raised, returned, raised, returned, ... eleven changes
        transitions += a.update(second % 2 == 0, at(second))
    assert [(t.kind.value, t.count) for t in transitions] == [
        ("raised", 0),
        ("returned", 0),
        ("raised", 0),
        ("chattering", 4),  # the fourth change within 60 s
    ]
    assert a.state.chattering and a.state.state is State.ACTIVE_UNACKED  # the state still follows
    assert a.next_deadline() == at(70)
    assert a.tick(at(69)) == []
    (end,) = a.tick(at(70))
    assert (end.kind, end.count, end.state, end.time) == (R.CHATTERING_ENDED, 8, "active_unacked", at(70))
    assert seen(a.update(False, at(80))) == [("returned", "rtn_unacked")]  # one by one again


def test_changes_spread_wider_than_the_window_are_not_chattering():
    a = alarm(chatter_count=3, chatter_window=60)
    kinds = []
    for step in range(10):
        kinds += [t.kind for t in a.update(step % 2 == 0, at(step * 30))]
    assert R.CHATTERING not in kinds and len(kinds) == 10
    assert len(a.state.changes) <= 4  # bounded memory


def test_no_realarm_while_chattering():
    a = alarm(chatter_count=2, chatter_window=60, realarm_seconds=5)
    for second in range(4):
        a.update(second % 2 == 0, at(second))
    a.update(True, at(4))
    assert a.state.chattering
    assert [t.kind for t in a.tick(at(30))] == []


# ---- the serialised state ------------------------------------------------------------------------------------


def test_the_state_round_trips_through_json():
    a = alarm(chatter_count=2, chatter_window=60, on_delay=5)
    for second in range(4):
        a.update(second % 2 == 0, at(second * 10), 20.5 + second)
    a.update(True, at(41), 99.5)  # on-delay running
    a.shelve(at(42), "op", seconds=300)
    a.set_suppressed(True, at(43))
    state = a.state
    assert state.chattering and state.pending_since == at(41) and state.shelved_until == at(342)
    data = state.to_dict()
    text = json.dumps(data)
    assert len(text) < 400
    back = AlarmState.from_dict(json.loads(text))
    assert back == state
    assert AlarmState().to_dict() == {"state": "normal"}
    assert AlarmState.from_dict({"state": "normal", "from_a_newer_node": 1}) == AlarmState()
    with pytest.raises(ValueError):
        AlarmState.from_dict({"state": "exploded"})


def test_a_shelving_replicated_mid_way_expires_at_its_original_time():
    a = raised()
    a.shelve(at(100), "op", seconds=600)
    b = Alarm(a.name, a.config, AlarmState.from_dict(a.state.to_dict()))
    assert b.tick(at(699)) == []
    assert [(t.kind, t.time) for t in b.tick(at(800))] == [(R.UNSHELVED, at(700)), (R.RAISED, at(700))]
    assert b.display_state == "active_unacked"
