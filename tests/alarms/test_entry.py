"""The alarm entry's form: flat, small, and carrying the whole state machine for the standby."""

import gc
import json
from datetime import UTC, datetime, timedelta

import msgpack
import pytest

from bms.alarms.conditions import Condition, Kind
from bms.alarms.live import alarm_view
from bms.alarms.spec import MACHINE, AlarmSpec, entry_state, entry_value, fixed_fields
from bms.alarms.states import AlarmConfig, AlarmState, State

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def spec(**fields) -> AlarmSpec:
    base = {
        "name": "ahu1_high",
        "point": "ahu1_temp",
        "condition": Condition(Kind.HIGH, limit=30.0, deadband=1.0),
        "config": AlarmConfig(),
        "priority": 200,
        "alarm_class": "high",
        "colour": "#ff8800",
        "annunciated": True,
        "area": "AHU 1",
    }
    return AlarmSpec(**(base | fields))


def busy_state() -> AlarmState:
    """A state with every field away from its default."""
    return AlarmState(
        state=State.ACTIVE_UNACKED,
        since=T0,
        condition=True,
        active=True,
        pending_since=T0 + timedelta(seconds=3),
        value=31.5,
        notified_at=T0 - timedelta(minutes=5),
        shelved_until=T0 + timedelta(minutes=15),
        shelved_until_normal=True,
        shelved_by="operator",
        suppressed=True,
        out_of_service=True,
        chattering=True,
        changes=(T0 - timedelta(seconds=20), T0 - timedelta(seconds=10), T0),
        summarised=4,
        journal_seq=17,
    )


LAST = {
    "kind": "shelved",
    "state": "shelved",
    "time": 1796029200000000,
    "value": 31.5,
    "user": "operator",
    "comment": 'a "quoted", comma, and ünicode comment',
    "count": 0,
    "number": 17,
}


@pytest.mark.parametrize("state", [AlarmState(), busy_state()], ids=["fresh", "busy"])
@pytest.mark.parametrize("last", [None, LAST], ids=["no-last", "last"])
def test_the_entry_carries_the_whole_state_machine_through_both_wire_encodings(state, last):
    value = entry_value(fixed_fields(spec()), state, "shelved", state.value, "text", last)
    for carried in (json.loads(json.dumps(value)), msgpack.unpackb(msgpack.packb(value))):
        assert entry_state(carried) == (state, last)


def test_the_entry_is_flat_so_the_garbage_collector_never_tracks_it():
    value = entry_value(fixed_fields(spec()), busy_state(), "out_of_service", 31.5, "text", LAST)
    assert all(isinstance(item, str | int | float | bool | type(None)) for item in value.values())
    assert not gc.is_tracked(value)
    assert not gc.is_tracked(msgpack.unpackb(msgpack.packb(value)))  # nor its copy in a web process


def test_fields_at_their_default_are_left_out_and_pages_see_them_filled_in():
    state = AlarmState(state=State.ACTIVE_UNACKED, since=T0, condition=True, active=True, value=31.5)
    value = entry_value(fixed_fields(spec(area="")), state, "active_unacked", 31.5, "ahu1_temp high", None)
    assert set(value) == {"point", "priority", "class", "colour", "state", "message", "value", MACHINE}
    view = alarm_view("ahu1_high", {"value": value, "time": T0.isoformat(), "seq": 7})
    assert view is not None
    assert view["alarm_state"] == "active_unacked" and view["area"] == ""
    assert view["ack_required"] is True and view["annunciated"] is True
    assert view["shelved_until"] is None and view["shelved_by"] == "" and view["chattering"] is False


def test_what_differs_from_the_default_is_shown():
    quiet = spec(config=AlarmConfig(ack_required=False), annunciated=False)
    value = entry_value(fixed_fields(quiet), busy_state(), "out_of_service", 31.5, "text", None)
    assert value["ack_required"] is False and value["annunciated"] is False
    assert value["state"] == "out_of_service" and value["alarm_state"] == "active_unacked"  # beneath the inhibit
    assert value["shelved_until"] == (T0 + timedelta(minutes=15) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )
    assert value["shelved_by"] == "operator" and value["chattering"] is True


def test_the_form_of_nodes_before_the_flat_entry_is_still_read():
    """A pair upgraded one node at a time: the new standby adopts the old active node's states."""
    state = busy_state()
    old = {"state": "out_of_service", "s": state.to_dict(), "last": LAST}
    assert entry_state(old) == (state, LAST)


def test_an_entry_without_a_state_or_with_an_unknown_layout():
    assert entry_state(None) is None
    assert entry_state({"state": "normal"}) is None
    with pytest.raises(ValueError, match="layout"):
        entry_state({"state": "normal", MACHINE: "[99]"})
