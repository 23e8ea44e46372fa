"""The embedded shape's drain: a thread that drains the outbox while the node is active (no broker there).

The node starts it with a callable that says whether it is active (its role
gate) and stops it on shutdown. It drains every poll period, at once after
:meth:`NotificationRunner.wake`, and again without waiting while passes come
back full. A failing pass (the database away) is logged once per outage and
retried next period; the thread never dies of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, connection

from bms.notifications import conf
from bms.notifications.drain import DrainResult, drain

log = logging.getLogger(__name__)


def runner_wanted() -> bool:
    """Should the node drain in a thread? ``BMS_NOTIFY_RUNNER``: ``on``, ``off`` or ``auto`` (the default).

    ``auto``: yes when Celery has no broker to use (``CELERY_TASK_ALWAYS_EAGER``,
    the embedded shape); a production node leaves it to the Celery worker.
    """
    choice = str(conf.setting("BMS_NOTIFY_RUNNER", "auto")).strip().lower()
    if choice in ("1", "on", "true", "yes"):
        return True
    if choice in ("0", "off", "false", "no"):
        return False
    return bool(getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False))


class NotificationRunner:
    """Drains the outbox on a thread of its own; ``is_active`` is asked before every pass and every send."""

    def __init__(
        self, is_active: Callable[[], bool], *, interval: float | None = None, name: str = "bms-notifications"
    ) -> None:
        self.is_active = is_active
        self.interval = conf.poll_seconds() if interval is None else interval
        self.name = name
        self.passes = 0
        self.last: DrainResult | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        """Start the thread (once; a second call does nothing while it runs)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to stop after the send in progress, and wait for it (default: a delivery timeout + 5 s)."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(conf.timeout() + 5 if timeout is None else timeout)

    def wake(self) -> None:
        """Drain now instead of at the end of the period (a hint: new notifications were written)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _active(self) -> bool:
        return not self._stop.is_set() and self.is_active()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                full = self._pass()
                if full:
                    continue
                self._wake.wait(self.interval)
                self._wake.clear()
        finally:
            connection.close()

    def _pass(self) -> bool:
        """One drain pass; True if more is due at once."""
        try:
            close_old_connections()
            result = drain(self._active)
        except Exception:
            if not self._failing:
                log.exception("notification drain failed; retrying every %.1f s", self.interval)
            self._failing = True
            connection.close()
            return False
        if self._failing:
            log.info("notification drain works again")
            self._failing = False
        self.passes += 1
        self.last = result
        return result.full and result.handled > 0 and not result.inactive
