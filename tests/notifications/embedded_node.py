"""Run by tests/notifications/test_embedded.py in a process of its own: the embedded shape (SQLite, no broker).

Migrates a fresh SQLite database, configures one email and one webhook
recipient (the test's receivers, from the environment), starts the
:class:`~bms.notifications.runner.NotificationRunner` the node would start,
journals ``BMS_TEST_TRANSITIONS`` raises the way the engine does, and exits
once every outbox row is settled (or after 60 s).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ["DJANGO_SETTINGS_MODULE"] = "bms.settings.embedded"

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from bms.notifications.models import Notification, NotificationRule, Recipient, RecipientGroup  # noqa: E402
from bms.notifications.runner import NotificationRunner, runner_wanted  # noqa: E402
from tests.notifications.conftest import journal_row, record  # noqa: E402


def main() -> int:
    call_command("migrate", verbosity=0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = int(os.environ["BMS_TEST_SMTP_PORT"])
    group = RecipientGroup.objects.create(name="on-duty")
    Recipient.objects.create(name="mail", group=group, address="ops@example.test")
    Recipient.objects.create(
        name="hook", group=group, channel="webhook", address=os.environ["BMS_TEST_WEBHOOK_URL"], secret="s"
    )
    NotificationRule.objects.create(name="all", group=group)
    if not runner_wanted():
        print("the embedded shape should want the runner", file=sys.stderr)
        return 2
    runner = NotificationRunner(lambda: True, interval=0.1)
    runner.start()
    now = timezone.now()
    record(*[journal_row(seq=seq, time=now) for seq in range(1, int(os.environ["BMS_TEST_TRANSITIONS"]) + 1)])
    deadline = time.monotonic() + 60
    while Notification.objects.exclude(status="sent").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.stop()
    return 0 if not Notification.objects.exclude(status="sent").exists() else 1


if __name__ == "__main__":
    sys.exit(main())
