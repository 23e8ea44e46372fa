"""Alarms on the real engine against a real pymodbus server: evaluation, image entries, journal, actions, restart."""

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connections

from bms.alarms.models import AlarmClass, AlarmDefinition, AlarmJournal
from bms.alarms.spec import SUMMARY_ENTRY, entry_name, entry_state
from bms.engine import bus
from bms.engine.image import GOOD
from bms.engine.role import RoleGate
from bms.engine.runner import Engine
from bms.points.models import Point
from tests.engine.conftest import eventually


@sync_to_async
def define(name: str = "test_high", **fields) -> AlarmDefinition:
    fields.setdefault(
        "alarm_class", AlarmClass.objects.get_or_create(name="tests", defaults={"default_priority": 5})[0]
    )
    fields.setdefault("kind", "high")
    return AlarmDefinition.objects.create(name=name, point=Point.objects.get(name="zone1_temp"), **fields)


@sync_to_async
def journal(alarm: str) -> list[tuple[str, str, int]]:
    rows = AlarmJournal.objects.filter(alarm=alarm).order_by("alarm_seq")
    return [(row.transition, row.state, row.alarm_seq) for row in rows]


def entry(engine: Engine, alarm: str) -> dict:
    state = engine.image.points.get(entry_name(alarm))
    return state.value if state is not None and isinstance(state.value, dict) else {}


@pytest.fixture
async def plant(building, transactional_db):
    """The demo building without its demo alarms: the journal counts here are this module's alarms only."""
    await sync_to_async(call_command)(
        "loaddemo", modbus_port=building.port, poll_interval=0.05, no_alarms=True, verbosity=0
    )
    yield building
    await sync_to_async(connections.close_all)()


@pytest.fixture
async def warm(engine, plant):
    await eventually(lambda: engine.image.points["zone1_temp"].quality == GOOD, message="first poll")
    await plant.set("zone1_temp", 21.0)
    await eventually(lambda: engine.image.points["zone1_temp"].value == 21.0)
    return engine


async def test_a_high_alarm_is_raised_returned_and_acknowledged_once_each(warm, plant):
    engine = warm
    await define(limit=25.0, deadband=1.0)
    await eventually(lambda: entry(engine, "test_high").get("state") == "normal", message="alarm loaded")
    await plant.set("zone1_temp", 26.0)
    await eventually(lambda: entry(engine, "test_high").get("state") == "active_unacked", message="raised")
    summary = engine.image.points[SUMMARY_ENTRY].value
    assert summary["unacked"]["tests"] == 1 and summary["active"]["tests"] == 1
    assert summary["highest_unacked_priority"] == 5
    assert entry(engine, "test_high")["message"] == "zone1_temp high: 26 degC (limit 25 degC)"
    await plant.set("zone1_temp", 24.5)  # inside the deadband: still active
    await eventually(lambda: engine.image.points["zone1_temp"].value == 24.5)
    await plant.set("zone1_temp", 23.0)
    await eventually(lambda: entry(engine, "test_high").get("state") == "rtn_unacked", message="returned")
    result = engine.alarms.act("acknowledge", ["test_high", "nope"], "operator", "seen")
    assert result["done"] == ["test_high"] and "nope" in result["refused"]
    assert engine.alarms.act("acknowledge", ["test_high"], "operator")["unchanged"] == ["test_high"]
    assert entry(engine, "test_high")["state"] == "normal"
    assert "tests" not in engine.image.points[SUMMARY_ENTRY].value["unacked"]
    await eventually(lambda: engine.journal.waiting == 0 and engine.journal.written >= 3, message="journal written")
    assert await journal("test_high") == [
        ("raised", "active_unacked", 1),
        ("returned", "rtn_unacked", 2),
        ("acknowledged", "normal", 3),
    ]
    row = await sync_to_async(AlarmJournal.objects.get)(alarm="test_high", transition="acknowledged")
    assert (row.username, row.comment, row.alarm_class, row.point_name) == ("operator", "seen", "tests", "zone1_temp")
    assert row.origin_seq > 0


async def test_an_on_delay_fires_at_the_source_time_plus_the_delay(warm, plant):
    engine = warm
    await define(limit=25.0, on_delay=0.6)
    await eventually(lambda: entry(engine, "test_high").get("state") == "normal")
    await plant.set("zone1_temp", 27.0)
    await eventually(lambda: engine.image.points["zone1_temp"].value == 27.0)
    crossed = engine.image.points["zone1_temp"].change_time
    assert entry(engine, "test_high")["state"] == "normal"  # the delay runs
    assert entry_state(entry(engine, "test_high"))[0].pending_since  # and the image (the standby) knows since when
    await eventually(lambda: entry(engine, "test_high").get("state") == "active_unacked", message="delayed")
    await eventually(lambda: engine.journal.written >= 1)
    row = await sync_to_async(AlarmJournal.objects.get)(alarm="test_high", transition="raised")
    assert row.time == crossed + timedelta(seconds=0.6)


async def test_actions_arrive_over_the_engine_channel_and_bad_ones_are_refused(warm, plant, layer):
    engine = warm
    await define(limit=25.0)
    await plant.set("zone1_temp", 26.0)
    await eventually(lambda: entry(engine, "test_high").get("state") == "active_unacked")
    reply_to = await layer.new_channel()
    base = {"type": bus.ALARM_ACTION, "reply_to": reply_to, "alarms": ["test_high"], "user": "op"}
    await layer.send(engine.channel, {**base, "action": "shelve", "seconds": 60, "comment": "noisy"})
    reply = await layer.receive(reply_to)
    assert reply["done"] == ["test_high"]
    assert entry(engine, "test_high")["state"] == "shelved"
    assert entry(engine, "test_high")["shelved_by"] == "op"
    await layer.send(engine.channel, {**base, "action": "explode"})
    assert "unknown alarm action" in (await layer.receive(reply_to))["detail"]
    await layer.send(engine.channel, {**base, "action": "acknowledge", "user": ""})
    assert (await layer.receive(reply_to))["error"] == "invalid"


def new_engine(layer) -> Engine:
    return Engine(layer, publish_min_interval=0.0, config_check_interval=0.05, command_scan_interval=0.05)


async def test_a_restarted_lone_node_resumes_from_the_journal_and_does_not_raise_again(plant, layer):
    await define(limit=25.0)
    await plant.set("zone1_temp", 26.0)
    first = new_engine(layer)
    await first.start()
    try:
        await eventually(lambda: entry(first, "test_high").get("state") == "active_unacked")
        await eventually(lambda: first.journal.written >= 1 and first.journal.waiting == 0)
    finally:
        await first.stop()
    again = new_engine(layer)
    await again.start()
    try:
        await eventually(lambda: again.image.points["zone1_temp"].value == 26.0, message="polled again")
        await eventually(lambda: entry(again, "test_high").get("state") == "active_unacked")
        assert entry_state(entry(again, "test_high"))[0].journal_seq == 1
        await plant.set("zone1_temp", 20.0)
        await eventually(lambda: entry(again, "test_high").get("state") == "rtn_unacked")
        await eventually(lambda: again.journal.written >= 1 and again.journal.waiting == 0)
    finally:
        await again.stop()
    assert await journal("test_high") == [("raised", "active_unacked", 1), ("returned", "rtn_unacked", 2)]


class Switchable(RoleGate):
    """A role the test flips, as the redundancy layer does on takeover."""

    def __init__(self, active: bool) -> None:
        self.is_active = active

    @property
    def active(self) -> bool:
        return self.is_active

    @property
    def epoch(self) -> int:
        return 1


async def test_a_successor_adopts_the_replicated_state_and_its_running_on_delay_fires_once_on_time(plant, layer):
    await define(limit=25.0, on_delay=1.5)
    await plant.set("zone1_temp", 21.0)
    old = new_engine(layer)
    await old.start()
    standby = Engine(layer, role=Switchable(False), publish_min_interval=0.0, config_check_interval=0.05)
    await standby.start()
    try:
        await eventually(lambda: entry(old, "test_high").get("state") == "normal")
        await plant.set("zone1_temp", 27.0)
        await eventually(lambda: entry_state(entry(old, "test_high"))[0].pending_since, message="delay runs")
        crossed = old.image.points["zone1_temp"].change_time
        assert entry(old, "test_high")["state"] == "normal"
        # the sync link's job, done by hand: the standby's image is the active node's
        rows = old.image.snapshot_rows()
        standby.image.load_rows(rows["seq"], rows["points"])
    finally:
        await old.stop()  # dies with the delay running
    try:
        standby.role.is_active = True
        await standby.take_control()
        await eventually(lambda: entry(standby, "test_high").get("state") == "active_unacked", message="fired")
        await eventually(lambda: standby.journal.written >= 1 and standby.journal.waiting == 0)
    finally:
        await standby.stop()
    rows = await sync_to_async(list)(AlarmJournal.objects.filter(alarm="test_high"))
    assert [(row.transition, row.alarm_seq, row.recovered) for row in rows] == [("raised", 1, False)]
    assert rows[0].time == crossed + timedelta(seconds=1.5)  # from the source time, not from the takeover


async def test_a_transition_the_state_has_and_the_journal_lacks_is_written_again_marked_recovered(plant, layer):
    await define(limit=25.0)
    await plant.set("zone1_temp", 26.0)
    old = new_engine(layer)
    await old.start()
    standby = Engine(layer, role=Switchable(False), publish_min_interval=0.0, config_check_interval=0.05)
    await standby.start()
    try:
        await eventually(lambda: entry(old, "test_high").get("state") == "active_unacked")
        await eventually(lambda: old.journal.written >= 1 and old.journal.waiting == 0)
        raised = await sync_to_async(AlarmJournal.objects.get)(alarm="test_high")
        rows = old.image.snapshot_rows()
        standby.image.load_rows(rows["seq"], rows["points"])
    finally:
        await old.stop()
    # the old node died before its row reached the partner: the successor's database does not have it
    await sync_to_async(AlarmJournal.objects.filter(alarm="test_high").delete)()
    try:
        standby.role.is_active = True
        await standby.take_control()
        await eventually(lambda: standby.journal.written >= 1 and standby.journal.waiting == 0)
        assert entry(standby, "test_high")["state"] == "active_unacked"
    finally:
        await standby.stop()
    again = await sync_to_async(list)(AlarmJournal.objects.filter(alarm="test_high"))
    assert [(r.transition, r.alarm_seq, r.recovered, r.time) for r in again] == [("raised", 1, True, raised.time)]


async def test_suppression_by_design_hides_the_alarm_and_releases_it_when_the_suppressing_point_clears(warm, plant):
    engine = warm
    await plant.set("ahu1_fan_cmd", True)  # "fan running": what suppresses the alarm here
    await eventually(lambda: engine.image.points["ahu1_fan_cmd"].value is True)

    @sync_to_async
    def with_suppression():
        return define(limit=25.0, suppression_point=Point.objects.get(name="ahu1_fan_cmd"))

    await (await with_suppression())
    await eventually(lambda: entry(engine, "test_high").get("state") == "suppressed", message="suppressed")
    await plant.set("zone1_temp", 26.0)
    await eventually(lambda: engine.image.points["zone1_temp"].value == 26.0)
    assert entry(engine, "test_high")["state"] == "suppressed"  # no raise while suppressed
    await plant.set("ahu1_fan_cmd", False)
    await eventually(lambda: entry(engine, "test_high").get("state") == "active_unacked", message="released")
    await eventually(lambda: engine.journal.waiting == 0 and engine.journal.written >= 3)
    assert [t for t, _, _ in await journal("test_high")] == ["suppressed", "unsuppressed", "raised"]


async def test_an_engineer_takes_an_alarm_out_of_service_through_the_configuration(warm, plant):
    engine = warm
    definition = await define(limit=25.0)
    await plant.set("zone1_temp", 26.0)
    await eventually(lambda: entry(engine, "test_high").get("state") == "active_unacked")
    await sync_to_async(definition.set_out_of_service)(True, "engineer")
    await eventually(lambda: entry(engine, "test_high").get("state") == "out_of_service", message="out of service")
    assert "tests" not in engine.image.points[SUMMARY_ENTRY].value["unacked"]
    await sync_to_async(definition.set_out_of_service)(False, "engineer")
    await eventually(lambda: entry(engine, "test_high").get("state") == "active_unacked", message="back")
    await eventually(lambda: engine.journal.waiting == 0 and engine.journal.written >= 4)
    rows = await sync_to_async(list)(AlarmJournal.objects.filter(alarm="test_high").order_by("alarm_seq"))
    assert [(r.transition, r.username) for r in rows] == [
        ("raised", ""),
        ("out_of_service", "engineer"),
        ("in_service", "engineer"),
        ("raised", ""),
    ]


async def test_a_quality_alarm_follows_a_device_that_stops_answering(warm, plant):
    engine = warm
    await define(name="test_quality", kind="quality", quality_delay=0.2)
    await eventually(lambda: entry(engine, "test_quality").get("state") == "normal")
    await plant.stop()
    await eventually(lambda: entry(engine, "test_quality").get("state") == "active_unacked", wait=15, message="raised")
    row = await eventually(
        lambda: AlarmJournal.objects.filter(alarm="test_quality", transition="raised").first(), db=True
    )
    # The first unusable quality raises it: comm_failure when the poll's timeout comes first, stale when a loaded
    # machine's poll waits longer than the staleness limit; the row and its message carry the one that raised it.
    assert row.value in ("comm_failure", "stale"), row.value
    assert row.message == f"zone1_temp quality {row.value}"


async def test_an_alarm_enabled_again_goes_on_numbering_after_its_journal(warm, plant):
    engine = warm
    definition = await define(limit=25.0)
    await plant.set("zone1_temp", 26.0)
    await eventually(lambda: entry(engine, "test_high").get("state") == "active_unacked")
    await plant.set("zone1_temp", 20.0)
    await eventually(lambda: entry(engine, "test_high").get("state") == "rtn_unacked")
    definition.enabled = False
    await sync_to_async(definition.save)()
    await eventually(lambda: "test_high" not in engine.alarms.runtimes, message="disabled")
    definition.enabled = True
    await sync_to_async(definition.save)()
    await eventually(lambda: entry(engine, "test_high").get("state") == "normal", message="enabled again")
    await plant.set("zone1_temp", 27.0)
    await eventually(lambda: entry(engine, "test_high").get("state") == "active_unacked", message="raised again")
    await eventually(
        lambda: AlarmJournal.objects.filter(alarm="test_high", alarm_seq=3).exists(), db=True, message="journalled"
    )
    assert await journal("test_high") == [
        ("raised", "active_unacked", 1),
        ("returned", "rtn_unacked", 2),
        ("raised", "active_unacked", 3),
    ]


async def test_a_flood_is_evaluated_in_slices_and_every_alarm_is_raised(warm, plant, monkeypatch):
    from bms.alarms import engine as alarm_engine

    monkeypatch.setattr(alarm_engine, "SLICE_SECONDS", 0.0)  # every slice ends after its first CLOCK_EVERY alarms
    monkeypatch.setattr(alarm_engine, "CLOCK_EVERY", 2)
    engine = warm
    for index in range(5):
        await define(name=f"flood_{index}", limit=25.0 + index * 0.1)
    await eventually(lambda: all(entry(engine, f"flood_{i}").get("state") == "normal" for i in range(5)))
    await plant.set("zone1_temp", 30.0)
    await eventually(
        lambda: all(entry(engine, f"flood_{i}").get("state") == "active_unacked" for i in range(5)), message="all"
    )
    assert engine.image.points[SUMMARY_ENTRY].value["unacked"]["tests"] == 5
