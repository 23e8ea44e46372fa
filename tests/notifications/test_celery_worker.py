"""Production's way: a real Celery worker and beat on a real Redis broker deliver the outbox to real receivers.

A dead broker, then a dead worker, delay the notifications but lose none,
and none arrives twice: the outbox rows wait in the database, beat's drain
messages (which expire) only say when to look.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.db import connection
from django.utils import timezone

from bms.notifications.models import Notification
from tests.notifications.conftest import journal_row, record
from tests.support.processes import wait_until
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


class Celery:
    """``celery -A bms worker`` and ``celery -A bms beat`` as production runs them, with the test's settings."""

    def __init__(self, tmp: Path, broker: str, smtp_port: int) -> None:
        self.tmp = tmp
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.notifications.celery_settings",
            "BMS_TEST_CELERY_BROKER": broker,
            "BMS_TEST_CELERY_DATABASE": connection.settings_dict["NAME"],
            "BMS_TEST_SMTP_PORT": str(smtp_port),
            "PYTHONPATH": str(ROOT),
        }
        self.processes: dict[str, subprocess.Popen] = {}
        self.log_paths: dict[str, Path] = {}
        self.started = 0

    def start(self, which: str) -> None:
        self.started += 1
        self.log_paths[which] = self.tmp / f"{which}-{self.started}.log"
        log = self.log_paths[which].open("w")
        if which == "worker":
            args = ["worker", "--pool=solo", "--without-gossip", "--without-mingle", "-n", f"notif{self.started}@%h"]
        else:
            args = ["beat", "-s", str(self.tmp / "beat-schedule")]
        self.processes[which] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bms", *args, "-l", "INFO"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self, which: str) -> None:
        process = self.processes.pop(which, None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def log(self, which: str) -> str:
        return self.log_paths[which].read_text() if which in self.log_paths else ""

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted(self.tmp.glob("*.log")))

    def stop(self) -> None:
        for which in list(self.processes):
            self.kill(which)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)  # not started: the broker is dead until the test starts it
    try:
        yield server
    finally:
        server.stop()


def test_a_dead_broker_then_a_dead_worker_delay_notifications_but_lose_none(
    site, mail_to_sink, receiver, broker, tmp_path
):
    celery = Celery(tmp_path, broker.url, mail_to_sink.port)
    try:
        celery.start("worker")
        celery.start("beat")
        now = timezone.now()
        record(journal_row(seq=1, time=now), journal_row(alarm="ahu1_fan.state", seq=1, time=now))
        first = set(Notification.objects.filter(stage="notify").values_list("key", flat=True))
        assert len(first) == 4

        # the broker is dead: the worker keeps trying to reach it, and nothing is sent meanwhile
        wait_until(lambda: "(2/None)" in celery.log("worker"), 60, message="the worker to miss Redis twice")
        wait_until(lambda: "beat: Connection error" in celery.log("beat"), 60, message="beat to miss Redis")
        assert not mail_to_sink.mails and not receiver.hits
        assert Notification.objects.filter(status="pending").count() == 6

        broker.start()  # the same port: the broker is back
        wait_until(lambda: len(mail_to_sink.mails) == 2 and len(receiver.accepted()) == 2, 90,
                   message=f"the first notifications\n{celery.logs()}")  # fmt: skip
        # The receivers count a message as it arrives, before the worker has its answer and marks the row sent.
        # Killed in between, the worker would leave the row pending under its claim, to be sent again with the
        # same key once the claim expires (docs/notifications.md): a worker dying mid-send, not this test's case.
        wait_until(lambda: Notification.objects.filter(key__in=first, status="sent").count() == 4, 30,
                   message=f"the worker to mark the first notifications sent\n{celery.logs()}")  # fmt: skip

        # the worker dies; beat goes on publishing drain messages that nobody takes
        celery.kill("worker")
        record(journal_row(seq=2, transition="returned", state="rtn_unacked", time=timezone.now()))
        second = set(Notification.objects.filter(stage="notify").values_list("key", flat=True)) - first
        queue = redis.Redis.from_url(broker.url)
        wait_until(lambda: queue.llen("celery") >= 2, 30, message="two drain messages waiting in the queue")
        assert len(mail_to_sink.mails) == 2 and len(receiver.accepted()) == 2
        assert Notification.objects.filter(key__in=second, status="pending").count() == 2

        celery.start("worker")
        wait_until(lambda: len(mail_to_sink.mails) == 3 and len(receiver.accepted()) == 3, 60,
                   message=f"the notifications written while the worker was dead\n{celery.logs()}")  # fmt: skip
        # three more drains by the new worker later, still once each
        done = celery.log("worker").count("succeeded in")
        wait_until(lambda: celery.log("worker").count("succeeded in") >= done + 3, 30, message="three more drains")
        keys = first | second
        assert dict(mail_to_sink.keys() + receiver.keys()) == {key: 1 for key in keys}
        assert set(Notification.objects.filter(key__in=keys).values_list("status", flat=True)) == {"sent"}
        queue.close()
    finally:
        celery.stop()
