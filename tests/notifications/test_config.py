"""Recipients' duty windows, and the checks every way of saving configuration goes through."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from bms.alarms.models import AlarmClass
from bms.notifications.models import Notification, NotificationRule, Recipient, RecipientGroup, on_duty
from bms.notifications.outbox import _bulk_create, build
from bms.points.models import ConfigRevision
from tests.notifications.conftest import journal_row, record

PARIS = ZoneInfo("Europe/Paris")


def paris(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=PARIS)  # 30 November 2026 is a Monday


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (paris(30, 8, 0), True),  # Monday, the window opens
        (paris(30, 16, 59), True),
        (paris(30, 17, 0), False),  # the end is exclusive
        (paris(29, 12, 0), False),  # Sunday
    ],
)
def test_a_day_window(when, expected):
    assert on_duty("mon,tue,wed,thu,fri", time(8), time(17), when, PARIS) is expected


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (paris(30, 22, 0), True),  # Monday night
        (datetime(2026, 12, 1, 5, 59, tzinfo=PARIS), True),  # Tuesday early: Monday's night
        (datetime(2026, 12, 1, 6, 0, tzinfo=PARIS), False),
        (paris(29, 23, 0), False),  # Sunday night is not listed
        (paris(30, 3, 0), False),  # Monday early belongs to Sunday's night
    ],
)
def test_an_overnight_window_belongs_to_the_day_it_starts(when, expected):
    assert on_duty("mon,tue,wed,thu,fri", time(22), time(6), when, PARIS) is expected


def test_the_window_is_read_in_the_sites_zone():
    utc_evening = datetime(2026, 11, 30, 21, 30, tzinfo=UTC)  # 22:30 in Paris
    assert on_duty("mon", time(22), time(23), utc_evening, PARIS)
    assert not on_duty("mon", time(22), time(23), utc_evening, ZoneInfo("UTC"))
    assert on_duty("sun, Mon", None, None, utc_evening, PARIS)  # all day, case and spaces forgiven


@pytest.mark.django_db
def test_recipients_and_rules_are_checked_whenever_saved(classes):
    group = RecipientGroup.objects.create(name="g")
    with pytest.raises(ValidationError) as bad_mail:
        Recipient.objects.create(name="a", group=group, channel="email", address="not-an-address")
    assert "address" in bad_mail.value.message_dict
    with pytest.raises(ValidationError) as no_secret:
        Recipient.objects.create(name="b", group=group, channel="webhook", address="http://127.0.0.1:9/x")
    assert "secret" in no_secret.value.message_dict
    with pytest.raises(ValidationError) as bad_url:
        Recipient.objects.create(name="c", group=group, channel="webhook", address="ftp://x/y", secret="s")
    assert "address" in bad_url.value.message_dict
    with pytest.raises(ValidationError) as half_window:
        Recipient.objects.create(name="d", group=group, address="d@example.test", start_time=time(8))
    assert "end_time" in half_window.value.message_dict
    with pytest.raises(ValidationError) as bad_days:
        Recipient.objects.create(name="e", group=group, address="e@example.test", weekdays="mon,someday")
    assert "someday" in str(bad_days.value)
    with pytest.raises(ValidationError) as bad_transition:
        NotificationRule.objects.create(name="r", group=group, transitions="raised,exploded")
    assert "exploded" in str(bad_transition.value)
    with pytest.raises(ValidationError) as no_group:
        NotificationRule.objects.create(name="r2", group=group, escalate_after_minutes=5)
    assert "escalation_group" in no_group.value.message_dict


@pytest.mark.django_db(transaction=True)
def test_a_configuration_change_moves_the_revision(classes):
    before = ConfigRevision.current()
    group = RecipientGroup.objects.create(name="g")
    rule = NotificationRule.objects.create(name="r", group=group)
    assert ConfigRevision.current() > before
    before = ConfigRevision.current()
    with transaction.atomic():
        rule.alarm_classes.add(AlarmClass.objects.get(name="critical"))
    assert ConfigRevision.current() > before


@pytest.mark.django_db
def test_the_insert_for_other_databases_skips_keys_present(site):
    row = journal_row()
    record(row)
    assert Notification.objects.count() == 3
    with transaction.atomic():
        assert _bulk_create(build([row])) == 0
        assert _bulk_create(build([journal_row(seq=2)])) == 3
    stamps = Notification.objects.values_list("origin", "origin_seq")
    assert len(set(stamps)) == 6


@pytest.mark.django_db
def test_the_admin_pages_answer(admin_client, site):
    record(journal_row())
    for path in (
        "/admin/notifications/notificationrule/",
        f"/admin/notifications/notificationrule/{site.rule.pk}/change/",
        "/admin/notifications/recipientgroup/",
        f"/admin/notifications/recipientgroup/{site.duty.pk}/change/",
        "/admin/notifications/recipient/",
        "/admin/notifications/notification/",
    ):
        assert admin_client.get(path).status_code == 200, path
    notification = Notification.objects.first()
    page = admin_client.get(f"/admin/notifications/notification/{notification.pk}/change/")
    assert page.status_code == 200 and notification.key in page.content.decode()  # shown, read-only
    assert admin_client.get("/admin/notifications/notification/add/").status_code == 403
