"""The Celery task in-process (eager, as the test settings run Celery): it drains only on the active node."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bms.celery import app
from bms.notifications.models import Notification
from bms.notifications.runner import runner_wanted
from bms.notifications.tasks import SCHEDULE_NAME, TASK_NAME, drain_outbox, node_is_active
from redundancy.models import NodeState
from tests.notifications.conftest import journal_row, record

pytestmark = pytest.mark.django_db


@pytest.fixture
def pair(settings):
    settings.BMS_PARTNER_ADDRESS = "127.0.0.1:1"
    settings.BMS_HEARTBEAT_PERIOD_MS = "1000"
    return NodeState.objects.create(node=settings.BMS_NODE_NAME, role="standby", epoch=3)


def test_a_node_alone_is_active():
    assert node_is_active()


def test_in_a_pair_only_a_fresh_active_row_means_active(pair):
    assert not node_is_active()
    NodeState.objects.filter(pk=pair.pk).update(role="active", updated_at=timezone.now())
    assert node_is_active()
    NodeState.objects.filter(pk=pair.pk).update(updated_at=timezone.now() - timedelta(seconds=10))
    assert not node_is_active()  # the engine stopped vouching for its role: the partner may be active


def test_the_task_sends_nothing_from_a_standby_then_everything_once_active(pair, site, mail_to_sink, receiver):
    record(journal_row(time=timezone.now() - timedelta(seconds=5)))
    result = drain_outbox.delay().get()
    assert result["inactive"] and result["sent"] == 0
    assert not mail_to_sink.mails and not receiver.hits

    NodeState.objects.filter(pk=pair.pk).update(role="active", updated_at=timezone.now())
    assert drain_outbox.delay().get()["sent"] == 2
    keys = set(Notification.objects.filter(stage="notify").values_list("key", flat=True))
    assert dict(mail_to_sink.keys() + receiver.keys()) == {key: 1 for key in keys}


def test_beat_has_the_drain_on_its_schedule():
    entry = app.conf.beat_schedule[SCHEDULE_NAME]
    assert entry["task"] == TASK_NAME and entry["schedule"] == 2.0
    assert entry["options"]["expires"] >= entry["schedule"]
    assert TASK_NAME in app.tasks


def test_a_worker_without_the_pair_settings_still_refuses_on_a_standby(settings):
    assert not settings.BMS_PARTNER_ADDRESS  # this worker thinks it runs alone ...
    NodeState.objects.create(node=settings.BMS_NODE_NAME, role="standby", epoch=3)  # ... but its engine says standby
    assert not node_is_active()
    NodeState.objects.filter(node=settings.BMS_NODE_NAME).update(role="active", updated_at=timezone.now())
    assert node_is_active()


@pytest.mark.parametrize(
    ("choice", "eager", "expected"),
    [("auto", True, True), ("auto", False, False), ("on", False, True), ("off", True, False)],
)
def test_the_runner_is_wanted_where_celery_has_no_broker(settings, choice, eager, expected):
    settings.BMS_NOTIFY_RUNNER = choice
    settings.CELERY_TASK_ALWAYS_EAGER = eager
    assert runner_wanted() is expected
