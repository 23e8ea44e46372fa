"""Configuration and history replication against the real database (both ends are this node's tables)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command

from bms.control.models import Command
from bms.events.models import Event
from bms.history.models import next_stamp
from bms.points.models import Device, Point
from redundancy import configsync, framing, history

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def configured():
    call_command("loaddemo", modbus_port=15999, demo_user=True, verbosity=0)
    engineers = Group.objects.create(name="Engineers")
    engineers.permissions.add(Permission.objects.get(codename="write_point"))
    User.objects.get(username="demo").groups.add(engineers)


def test_config_round_trip_restores_everything_with_the_same_keys_and_hash(configured):
    dump = configsync.dump_config()
    original_hash = configsync.hash_dump(dump)
    point = Point.objects.order_by("pk").first()
    # The standby drifted: renamed, deleted and added rows, and swapped unique names.
    Device.objects.create(name="stray", host="127.0.0.1", port=1)
    Point.objects.filter(pk=point.pk).update(description="edited")
    User.objects.create_user("local-only", password="x" * 12)
    Group.objects.filter(name="Engineers").update(name="Renamed")
    Group.objects.create(name="Engineers")
    assert configsync.config_hash() != original_hash

    assert configsync.apply_config(dump) == original_hash
    assert not Device.objects.filter(name="stray").exists()
    assert not User.objects.filter(username="local-only").exists()
    assert Point.objects.get(pk=point.pk).description == point.description
    demo = User.objects.get(username="demo")
    assert demo.check_password("demo") and demo.has_perm("points.write_point")
    # Keys arrived explicitly; new rows still get fresh keys (sequences were moved past them).
    assert Device.objects.create(name="after", host="127.0.0.1", port=2).pk > max(d["id"] for d in dump["devices"])


def test_alarm_classes_and_definitions_travel_with_the_configuration(configured):
    from bms.alarms.models import AlarmClass, AlarmDefinition

    # created here: transactional tests flush the classes the data migration made
    high, _ = AlarmClass.objects.get_or_create(name="high", defaults={"default_priority": 300})
    AlarmDefinition.objects.create(
        name="travels",
        point=Point.objects.get(name="zone1_temp"),
        kind="high",
        limit=26.0,
        deadband=0.5,
        alarm_class=high,
    )
    dump = configsync.dump_config()
    # the demo building's own alarms travel too
    assert {alarm["name"]: alarm["limit"] for alarm in dump["alarms"]}["travels"] == 26.0
    original_hash = configsync.hash_dump(dump)
    AlarmDefinition.objects.update(limit=30.0)  # the standby drifted
    AlarmClass.objects.create(name="local-only", default_priority=900)
    assert configsync.config_hash() != original_hash

    assert configsync.apply_config(dump) == original_hash
    assert AlarmDefinition.objects.get(name="travels").limit == 26.0
    assert not AlarmClass.objects.filter(name="local-only").exists()


def test_a_packed_configuration_travels_smaller_and_a_bomb_is_refused(configured, monkeypatch):
    dump = configsync.dump_config()
    packed = configsync.pack_dump(dump)
    assert len(packed) < len(framing.pack(dump)) / 2
    assert configsync.hash_dump(configsync.unpack_dump(packed)) == configsync.hash_dump(dump)
    monkeypatch.setattr(configsync, "MAX_DUMP_BYTES", 1000)
    with pytest.raises(configsync.DumpTooLarge):
        configsync.unpack_dump(packed)


def test_last_login_is_not_configuration(configured):
    before = configsync.config_hash()
    User.objects.filter(username="demo").update(last_login="2026-01-01T00:00:00Z")
    assert configsync.config_hash() == before


def _foreign_rows(model, fields, rows):
    return {"table": model._meta.label_lower, "origin": "backup", "fields": fields, "rows": rows}


def test_history_rows_are_stamped_in_order_and_found_by_cursor():
    for n in range(3):
        Event.objects.create(time="2026-11-22T00:00:00Z", kind="k", source="s", message=f"m{n}")
    stamps = list(Event.objects.order_by("origin_seq").values_list("origin", "origin_seq"))
    assert [seq for _, seq in stamps] == sorted(seq for _, seq in stamps)
    assert len({seq for _, seq in stamps}) == 3
    origin = stamps[0][0]
    batches, backlog = history.rows_after({"events.event": {origin: stamps[0][1]}})
    events = [b for b in batches if b["table"] == "events.event"]
    assert backlog == 0 and [len(b["rows"]) for b in events] == [2]


def test_storing_a_batch_twice_changes_nothing_and_acknowledges_the_top():
    fields = ["time", "kind", "source", "severity", "message", "origin", "epoch", "origin_seq"]
    rows = [["2026-11-22T00:00:00Z", "k", "backup", "info", f"m{n}", "backup", 2, n] for n in (1, 2, 3)]
    batch = _foreign_rows(Event, fields, rows)
    assert history.store_rows(batch) == 3
    assert history.store_rows(batch) == 3
    assert Event.objects.filter(origin="backup").count() == 3
    assert history.local_cursors()["events.event"]["backup"] == 3


def test_a_newer_command_version_overwrites_and_dangling_references_become_null():
    fields = ["command_id", "point_id", "point_name", "value", "payload_hash", "source", "username", "accepted_by",
              "status", "error", "created_at", "origin", "epoch", "origin_seq"]  # fmt: skip
    base = ["c-1", 99999, "ghost", 1, "h", "api", "op", "backup"]
    tail = ["2026-11-22T00:00:00Z", "backup", 2]
    history.store_rows(_foreign_rows(Command, fields, [[*base, "executing", "", *tail, 7]]))
    history.store_rows(_foreign_rows(Command, fields, [[*base, "succeeded", "", *tail, 8]]))
    command = Command.objects.get(command_id="c-1")
    assert command.status == "succeeded" and command.origin_seq == 8
    assert command.point_id is None  # point 99999 does not exist here


def test_unknown_table_or_field_is_refused_with_its_name():
    with pytest.raises(ValueError, match="unknown history table"):
        history.store_rows({"table": "x.y", "origin": "b", "fields": [], "rows": []})
    with pytest.raises(ValueError, match="no field"):
        history.store_rows({"table": "events.event", "origin": "b", "fields": ["bogus"], "rows": [[1]]})


def test_next_stamp_counts_per_origin():
    from django.db import transaction

    with transaction.atomic():
        a = next_stamp("x")
        b = next_stamp("x")
        c = next_stamp("y")
    assert (a[0], a[2] + 1) == (b[0], b[2]) and c[2] == 1


def test_user_and_group_changes_move_the_revision_but_a_login_does_not():
    from bms.points.models import ConfigRevision

    start = ConfigRevision.current()
    user = User.objects.create_user("op", password="x" * 12)
    after_create = ConfigRevision.current()
    assert after_create > start
    user.groups.add(Group.objects.create(name="Ops"))
    assert ConfigRevision.current() > after_create
    before_login = ConfigRevision.current()
    user.save(update_fields=["last_login"])
    assert ConfigRevision.current() == before_login


def test_notification_rules_and_recipients_travel_with_the_configuration(configured):
    from bms.alarms.models import AlarmClass
    from bms.notifications.models import NotificationRule, Recipient, RecipientGroup

    critical, _ = AlarmClass.objects.get_or_create(name="critical", defaults={"default_priority": 100})
    duty = RecipientGroup.objects.create(name="duty")
    Recipient.objects.create(name="hook", group=duty, channel="webhook", address="http://127.0.0.1:9/x", secret="s3")
    rule = NotificationRule.objects.create(name="urgent", group=duty)
    rule.alarm_classes.add(critical)
    dump = configsync.dump_config()
    original_hash = configsync.hash_dump(dump)
    rule.alarm_classes.clear()  # the standby drifted
    Recipient.objects.filter(name="hook").update(secret="other")
    RecipientGroup.objects.create(name="local-only")
    assert configsync.config_hash() != original_hash

    assert configsync.apply_config(dump) == original_hash
    assert list(NotificationRule.objects.get(name="urgent").alarm_classes.values_list("name", flat=True)) == [
        "critical"
    ]
    assert Recipient.objects.get(name="hook").secret == "s3"
    assert not RecipientGroup.objects.filter(name="local-only").exists()
