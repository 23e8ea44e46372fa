"""The embedded shape end to end: SQLite, no broker, the runner thread drains to the real receivers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.notifications.receivers import SmtpSink, WebhookReceiver

HERE = Path(__file__).resolve().parent


def test_the_embedded_node_drains_in_a_thread(tmp_path, smtp_sink: SmtpSink, receiver: WebhookReceiver):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'node.sqlite3'}",
        "BMS_TEST_SMTP_PORT": str(smtp_sink.port),
        "BMS_TEST_WEBHOOK_URL": receiver.url("/hook"),
        "BMS_TEST_TRANSITIONS": "40",
        "BMS_LOG_LEVEL": "WARNING",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([sys.executable, str(HERE / "embedded_node.py")], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert len(smtp_sink.mails) == len(receiver.accepted()) == 40
    assert set(smtp_sink.keys().values()) == set(receiver.keys().values()) == {1}
