"""The partner's clock offset, measured from the heartbeats the way NTP does (four timestamps, least delay wins).

Each heartbeat carries its send time (``time``, the sender's wall clock) and
echoes the last heartbeat it received from the partner: that heartbeat's
``time`` (``echo``) and how long it was held before this one left
(``hold``, measured on the sender's monotonic clock). With ``t1`` our send
time, ``t2 = t3 - hold`` the partner's receive time, ``t3`` the partner's
send time and ``t4`` our receive time::

    offset = ((t2 - t1) + (t3 - t4)) / 2      # partner clock minus ours
    delay  = (t4 - t1) - hold                 # the round trip on the wire

The estimate is the offset of the sample with the least delay among the
last few (the one least distorted by queueing). It lets the node show a
skewed clock (events and commands from both nodes sort by wall-clock time),
warn about it, and compute replication lag without it.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime
from typing import Any

SAMPLES = 16


class ClockOffset:
    """Partner wall clock minus this node's, estimated from heartbeats; ``offset`` is None until measured."""

    def __init__(self, samples: int = SAMPLES) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=samples)  # (delay, offset) in seconds
        self._last_theirs: datetime | None = None
        self._received_at = 0.0

    @property
    def offset(self) -> float | None:
        if not self.samples:
            return None
        return min(self.samples)[1]

    @property
    def delay(self) -> float | None:
        if not self.samples:
            return None
        return min(self.samples)[0]

    def echo(self) -> dict[str, Any]:
        """The fields our next heartbeat carries so the partner can measure too."""
        if self._last_theirs is None:
            return {}
        return {"echo": self._last_theirs, "hold": time.monotonic() - self._received_at}

    def heard(self, heartbeat: dict[str, Any], now: datetime) -> None:
        """A partner heartbeat arrived at ``now`` (our wall clock, aware UTC)."""
        sent = heartbeat.get("time")
        if not isinstance(sent, datetime):
            return
        self._last_theirs = sent
        self._received_at = time.monotonic()
        echo, hold = heartbeat.get("echo"), heartbeat.get("hold")
        if not isinstance(echo, datetime) or not isinstance(hold, int | float) or not 0 <= hold < 60:
            return
        t1, t3, t4 = echo, sent, now
        delay = (t4 - t1).total_seconds() - hold
        if delay < 0:
            delay = 0.0  # clock resolution; the sample is still good
        offset = ((t3 - t1).total_seconds() - hold + (t3 - t4).total_seconds()) / 2
        self.samples.append((delay, offset))

    def reset(self) -> None:
        """The partner restarted or the link was rebuilt: old samples may describe another clock."""
        self.samples.clear()
        self._last_theirs = None
