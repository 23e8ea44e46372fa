"""The process image: every point's value, quality and timestamps, with a sequence number per change.

Snapshot + ordered deltas keyed by ``seq`` is the one model for every
consumer (websocket clients now, the standby later): a delta carries the
sequence range ``(from, seq]`` it covers and the latest state of every point
that changed in that range, so a consumer whose own ``seq`` is not ``from``
knows it missed something and asks for a snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drivers.base import RawValue

GOOD = "good"
UNCERTAIN = "uncertain"
BAD = "bad"
COMM_FAILURE = "comm_failure"
STALE = "stale"
OUT_OF_SERVICE = "out_of_service"
QUALITIES = (GOOD, UNCERTAIN, BAD, COMM_FAILURE, STALE, OUT_OF_SERVICE)


@dataclass(slots=True)
class PointState:
    """The live state of one point. Times are timezone-aware UTC datetimes."""

    value: RawValue | None = None
    quality: str = UNCERTAIN
    source_time: datetime | None = None
    change_time: datetime | None = None
    seq: int = 0

    def as_wire(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "quality": self.quality,
            "time": self.source_time.isoformat() if self.source_time else None,
            "changed": self.change_time.isoformat() if self.change_time else None,
            "seq": self.seq,
        }


class ProcessImage:
    """All point states of one node, the stream's sequence counter and the set of unpublished changes."""

    def __init__(self) -> None:
        self.seq = 0
        self.published_seq = 0
        self.points: dict[str, PointState] = {}
        self._dirty: dict[str, None] = {}  # insertion-ordered set

    def define(self, names: list[str]) -> None:
        """Make the image hold exactly ``names``: new points start uncertain, removed ones are announced."""
        wanted = set(names)
        for name in list(self.points):
            if name not in wanted:
                del self.points[name]
                self.seq += 1
                self._dirty[name] = None
        for name in names:
            if name not in self.points:
                self.seq += 1
                self.points[name] = PointState(seq=self.seq)
                self._dirty[name] = None

    def update(self, name: str, value: RawValue | None, quality: str, when: datetime, deadband: float = 0.0) -> bool:
        """Record a reading; return True if it is a change (beyond the deadband, or of quality)."""
        state = self.points.get(name)
        if state is None:
            return False
        if value is None:
            value = state.value  # keep the last known value; quality tells it is not current
        elif state.value is not None and quality == state.quality and not _differs(state.value, value, deadband):
            return False
        if value == state.value and quality == state.quality:
            return False
        self.seq += 1
        state.value = value
        state.quality = quality
        state.source_time = when
        state.change_time = when
        state.seq = self.seq
        self._dirty[name] = None
        return True

    def mark(self, names: list[str], quality: str, when: datetime) -> int:
        """Set the quality of several points (keeping their values); return how many changed."""
        return sum(self.update(name, None, quality, when) for name in names)

    def snapshot(self) -> dict[str, Any]:
        return {"seq": self.seq, "points": {name: state.as_wire() for name, state in self.points.items()}}

    def take_delta(self) -> dict[str, Any] | None:
        """Return the unpublished changes as one delta and mark them published; None if there are none."""
        if not self._dirty:
            return None
        points = {name: (self.points[name].as_wire() if name in self.points else None) for name in self._dirty}
        delta = {"from": self.published_seq, "seq": self.seq, "points": points}
        self._dirty.clear()
        self.published_seq = self.seq
        return delta


def _differs(old: RawValue, new: RawValue, deadband: float) -> bool:
    if isinstance(old, bool) or isinstance(new, bool) or deadband <= 0:
        return old != new
    return abs(float(new) - float(old)) > deadband
