"""Through the engine's own write path: real transitions of the alarm state machine, journalled by
``bms.alarms.store.write_journal`` (which calls the hook in its transaction), drained to the real receivers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bms.alarms.models import AlarmClass, AlarmDefinition
from bms.alarms.states import Alarm
from bms.alarms.store import write_journal
from bms.notifications import drain as draining
from bms.notifications.models import Notification
from bms.points.models import Device, Point
from tests.notifications.conftest import T0

pytestmark = pytest.mark.django_db


def active() -> bool:
    return True


@pytest.fixture
def spec(site):
    plant = Device.objects.create(name="plant", host="127.0.0.1", port=1502)
    point = Point.objects.create(device=plant, name="zone1_temp", address="ir:0", data_type="float32", unit="degC")
    definition = AlarmDefinition.objects.create(
        point=point, kind="high", limit=26.0, alarm_class=AlarmClass.objects.get(name="high"), area="AHU-1"
    )
    return AlarmDefinition.objects.select_related("point", "alarm_class").get(pk=definition.pk).spec()


def test_each_transition_the_engine_journals_is_notified_once(spec, mail_to_sink, receiver):
    alarm = Alarm(spec.name, spec.config)
    transitions = alarm.update(True, T0, 27.5)  # raised
    transitions += alarm.update(False, T0 + timedelta(minutes=2), 25.0)  # returned (unacknowledged)
    transitions += alarm.acknowledge(T0 + timedelta(minutes=3), "op")  # acknowledged: no rule asks for it
    assert [t.kind.value for t in transitions] == ["raised", "returned", "acknowledged"]
    items = [(transition, spec, False) for transition in transitions]
    assert write_journal(items) == 3
    assert write_journal(items) == 0  # the same transitions again (replicated first): not journalled, not notified

    assert draining.drain(active, now=T0 + timedelta(minutes=30)).sent == 4  # escalation cancelled by the ack
    keys = set(Notification.objects.filter(stage="notify").values_list("key", flat=True))
    assert len(keys) == 4
    assert dict(mail_to_sink.keys() + receiver.keys()) == {key: 1 for key in keys}
    assert Notification.objects.get(stage="escalation").status == "cancelled"
    assert sorted(hit.json()["transition"] for hit in receiver.accepted()) == ["raised", "returned"]
    assert {hit.json()["message"] for hit in receiver.accepted()} == {spec.message(27.5), spec.message(25.0)}
