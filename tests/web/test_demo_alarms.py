"""The demo building's alarms: what ``loaddemo`` loads, and that they go off by themselves now and then.

The second part runs the simulator's own physics (``SimulatedBuilding.step``
and ``SimulatedBacnetDevice.step``, seeded, on a simulated clock: two hours
in a second or two) and feeds every sample through the alarm engine's own
logic (:func:`bms.alarms.conditions.evaluate` and the ISA-18.2 state machine)
with the shipped definitions, as the engine does with each reading.
"""

from __future__ import annotations

import asyncio
import csv
from collections import Counter
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from bms.alarms.conditions import evaluate
from bms.alarms.models import AlarmDefinition
from bms.alarms.states import Alarm, TransitionKind
from bms.points.management.commands.loaddemo import DEMO_ALARMS_CSV, DEMO_BACNET_ALARMS_CSV
from drivers.simulator.bacnet_device import SimulatedBacnetDevice
from drivers.simulator.building import SimulatedBuilding

MODBUS_ALARMS = {row["name"] for row in csv.DictReader(DEMO_ALARMS_CSV.open())}
BACNET_ALARMS = {row["name"] for row in csv.DictReader(DEMO_BACNET_ALARMS_CSV.open())}
SIMULATED_SECONDS = 2 * 3600
STEP = 0.5  # the Modbus plant's step; the BACnet device steps every second
START = 1_800_000_000.0  # any time: two hours cover the slow sine waves' peaks and troughs


def test_loaddemo_loads_the_demo_alarms_and_operators_may_act_on_them(db):
    call_command("loaddemo", modbus_port=1, demo_user=True, verbosity=0)
    assert set(AlarmDefinition.objects.values_list("name", flat=True)) == MODBUS_ALARMS
    assert len(MODBUS_ALARMS) >= 4
    classes = set(AlarmDefinition.objects.values_list("alarm_class__name", flat=True))
    assert "high" in classes, "a high-priority demo alarm lets the sound be heard"
    demo = User.objects.get(username="demo")
    assert demo.has_perm("alarms.acknowledge_alarm") and demo.has_perm("alarms.shelve_alarm")
    assert demo.has_perm("points.write_point")

    call_command("loaddemo", modbus_port=1, demo_user=True, verbosity=0)  # again: the same, updated in place
    assert AlarmDefinition.objects.count() == len(MODBUS_ALARMS)


def test_the_bacnet_device_brings_its_alarms_and_no_alarms_brings_none(db):
    call_command("loaddemo", modbus_port=1, bacnet_port=47999, verbosity=0)
    assert set(AlarmDefinition.objects.values_list("name", flat=True)) == MODBUS_ALARMS | BACNET_ALARMS
    AlarmDefinition.objects.all().delete()
    call_command("loaddemo", modbus_port=1, bacnet_port=47999, no_alarms=True, verbosity=0)
    assert not AlarmDefinition.objects.exists()


def test_loaddemo_works_on_a_database_whose_alarm_classes_were_flushed(db):
    from bms.alarms.models import AlarmClass

    AlarmClass.objects.all().delete()
    call_command("loaddemo", modbus_port=1, verbosity=0)
    assert AlarmDefinition.objects.count() == len(MODBUS_ALARMS)


async def _simulate(points: set[str], seconds: float) -> list[tuple[float, dict[str, float]]]:
    """Samples ``(time, {signal: raw value})`` of the real plant models every STEP seconds of simulated time."""
    clock = [START]
    plant = SimulatedBuilding(step_seconds=None, seed=11)
    device = SimulatedBacnetDevice("127.0.0.1:0", step_seconds=None, seed=12)
    await plant.start()
    await device.start()
    samples = []
    try:
        with (
            mock.patch("drivers.simulator.building.time.time", lambda: clock[0]),
            mock.patch("drivers.simulator.bacnet_device.time.time", lambda: clock[0]),
        ):
            for step in range(int(seconds / STEP)):
                clock[0] += STEP
                await plant.step(STEP)
                if step % 2:
                    device.step(2 * STEP)
                sample = {}
                for name in points:
                    sample[name] = await plant.get(name) if name != "chiller_load" else device.get(name)
                samples.append((clock[0], sample))
    finally:
        await device.stop()
        await plant.stop()
    return samples


def test_the_demo_alarms_go_off_by_themselves_now_and_then(db):
    call_command("loaddemo", modbus_port=1, bacnet_port=47999, verbosity=0)
    definitions = list(AlarmDefinition.objects.select_related("point", "setpoint_point", "alarm_class"))
    assert {d.name for d in definitions} == MODBUS_ALARMS | BACNET_ALARMS
    watched = {d.point.name for d in definitions} | {d.setpoint_point.name for d in definitions if d.setpoint_point}
    scale = {d.point.name: (d.point.scale, d.point.offset) for d in definitions}
    scale |= {d.setpoint_point.name: (1.0, 0.0) for d in definitions if d.setpoint_point}

    samples = asyncio.run(_simulate(watched, SIMULATED_SECONDS))

    alarms = {d.name: Alarm(d.name, d.alarm_config()) for d in definitions}
    raised: Counter[str] = Counter()
    kinds: Counter[TransitionKind] = Counter()
    for when, raw in samples:
        now = datetime.fromtimestamp(when, UTC)
        values = {name: raw[name] * scale[name][0] + scale[name][1] for name in raw}
        for definition in definitions:
            alarm = alarms[definition.name]
            value = values[definition.point.name]
            setpoint = values[definition.setpoint_point.name] if definition.setpoint_point else None
            condition = evaluate(
                definition.condition(), value, "good", now, active=alarm.state.condition, setpoint=setpoint
            )
            for transition in alarm.update(condition, now, value):
                kinds[transition.kind] += 1
                if transition.kind is TransitionKind.RAISED:
                    raised[definition.name] += 1
            if alarm.state.state.value == "rtn_unacked":
                alarm.acknowledge(now, "demo")  # an operator keeps the console tidy; raising again counts anew

    hours = SIMULATED_SECONDS / 3600
    print({name: raised[name] for name in sorted(alarms)})
    for name in alarms:
        assert raised[name] >= 1, f"{name} never went off in {hours:g} simulated hours: {dict(raised)}"
        assert raised[name] <= 12 * hours, f"{name} went off {raised[name]} times in {hours:g} hours: too often"
    assert kinds[TransitionKind.CHATTERING] == 0, "a demo alarm chattered: widen its deadband or on-delay"
    assert sum(raised.values()) >= 6 * hours, "the demo should show an alarm every few minutes"


@pytest.mark.parametrize("path", [DEMO_ALARMS_CSV, DEMO_BACNET_ALARMS_CSV])
def test_demo_alarm_names_keep_clear_of_the_operator_guide_example(path):
    """The guide's example imports into the demo building as new definitions (tests/alarms/test_import.py)."""
    names = {row["name"] for row in csv.DictReader(path.open())}
    assert all(name.startswith("demo.") for name in names)
