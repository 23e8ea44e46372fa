"""The process image: every point's value, quality and timestamps, with a sequence number per change.

Snapshot + ordered deltas keyed by ``seq`` is the one model for every
consumer (websocket clients now, the standby later): a delta carries the
sequence range ``(from, seq]`` it covers and the latest state of every point
that changed in that range, so a consumer whose own ``seq`` is not ``from``
knows it missed something and asks for a snapshot.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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

    def as_live(self, stamps: dict[int, int] | None = None) -> list[Any]:
        """The live stream's row: ``[value, quality, time_us, changed_us, seq]`` (:mod:`bms.engine.bus`).

        ``stamps``: epoch-microsecond memo by ``id()`` of the datetime, valid for one call over many points (the
        points of one poll answer share their datetime objects)."""
        if stamps is None:
            stamps = {}
        return [
            self.value,
            self.quality,
            _micros(self.source_time, stamps),
            _micros(self.change_time, stamps),
            self.seq,
        ]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)


def _micros(when: datetime | None, stamps: dict[int, int]) -> int | None:
    """Epoch microseconds of an aware datetime: exact, an integer, cheap to send and to compare."""
    if when is None:
        return None
    # Keyed by id: hashing an aware datetime asks its tzinfo for the offset. The caller keeps every datetime
    # alive (they belong to the points) for as long as the memo is used, so ids are not reused meanwhile.
    micros = stamps.get(id(when))
    if micros is None:
        micros = stamps[id(when)] = (when - _EPOCH) // _ONE_MICROSECOND
    return micros


#: a point's state on the sync link: (value, quality, source_time, change_time, seq); None = point removed
Row = tuple[RawValue | None, str, datetime | None, datetime | None, int] | None


class ImageCursor:
    """One consumer's position in the change stream: which points changed since it last took a delta."""

    def __init__(self, image: ProcessImage, track_reads: bool = False) -> None:
        self.image = image
        self.published_seq = image.seq
        self.dirty: dict[str, None] = {}  # insertion-ordered set
        #: with ``track_reads``: the read times that moved without a change (see ProcessImage.observe), the latest
        #: per group of names, keyed by id() of the names object (held here, so the id is not reused meanwhile)
        self.reads: dict[int, tuple[Sequence[str], datetime]] | None = {} if track_reads else None

    def take_delta(self) -> dict[str, Any] | None:
        """The changes since the last call as ``{from, seq, points: {name: live row | None}}``; None if none.

        A live row is :meth:`PointState.as_live` (the layout is in :mod:`bms.engine.bus`); None = point removed.
        """
        if not self.dirty:
            return None
        get = self.image.points.get
        stamps: dict[int, int] = {}
        changed: dict[str, list[Any] | None] = {}
        # PointState.as_live and _micros inlined: a delta after a busy poll holds thousands of points, and the
        # two calls per point cost more than building the rows
        with _gc_paused(len(self.dirty), GC_PAUSE_ROWS):
            for name in self.dirty:
                state = get(name)
                if state is None:
                    changed[name] = None
                    continue
                source, change = state.source_time, state.change_time
                if source is None:
                    source_us = None
                else:
                    source_us = stamps.get(id(source))
                    if source_us is None:
                        source_us = stamps[id(source)] = (source - _EPOCH) // _ONE_MICROSECOND
                if change is source:
                    change_us = source_us  # the usual case: a change's source time is its change time
                else:
                    change_us = _micros(change, stamps)
                changed[name] = [state.value, state.quality, source_us, change_us, state.seq]
        return self._advance(changed)

    def take_rows(self) -> dict[str, Any] | None:
        """Like :meth:`take_delta` with compact rows (the sync link's form)."""
        if not self.dirty:
            return None
        get = self.image.points.get
        rows = {}
        with _gc_paused(len(self.dirty), GC_PAUSE_ROWS):
            for name in self.dirty:
                state = get(name)
                rows[name] = (
                    None
                    if state is None
                    else (state.value, state.quality, state.source_time, state.change_time, state.seq)
                )
        return self._advance(rows)

    def take_reads(self) -> list[tuple[datetime, list[str]]]:
        """The read times recorded since the last call, as ``[(when, names), ...]`` (for ``apply_reads``)."""
        if not self.reads:
            return []
        reads = [(when, list(names)) for names, when in self.reads.values()]
        self.reads.clear()
        return reads

    def reset(self) -> None:
        """Forget pending changes: the consumer just received a full snapshot at the current ``seq``."""
        self.dirty.clear()
        if self.reads is not None:
            self.reads.clear()
        self.published_seq = self.image.seq

    def close(self) -> None:
        self.image.cursors.remove(self)
        if self in self.image.read_trackers:
            self.image.read_trackers.remove(self)

    def _advance(self, changed: dict[str, Any]) -> dict[str, Any]:
        delta = {"from": self.published_seq, "seq": self.image.seq, "points": changed}
        self.dirty.clear()
        self.published_seq = self.image.seq
        return delta


class ProcessImage:
    """All point states of one node, the stream's sequence counter and each consumer's unpublished changes.

    The active node's engine writes it from the pollers; a standby's is
    written only by replication (:meth:`load_rows`, :meth:`apply_rows`), which
    keeps the active node's ``seq`` numbers, so after a takeover the stream
    continues where the old active node left it.
    """

    def __init__(self) -> None:
        self.seq = 0
        self.points: dict[str, PointState] = {}
        #: moves whenever an entry of ``points`` is added or removed, so that lists of state objects (see
        #: :meth:`observe`) can be kept while it stays the same
        self.layout = 0
        self.cursors: list[ImageCursor] = []
        self.read_trackers: list[ImageCursor] = []
        self._publisher = self.cursor()

    def cursor(self, track_reads: bool = False) -> ImageCursor:
        """A new consumer of the change stream; ``track_reads``: it also collects read times (the sync link)."""
        cursor = ImageCursor(self, track_reads)
        self.cursors.append(cursor)
        if track_reads:
            self.read_trackers.append(cursor)
        return cursor

    @property
    def published_seq(self) -> int:
        return self._publisher.published_seq

    def _touch(self, name: str) -> None:
        for cursor in self.cursors:
            cursor.dirty[name] = None

    def define(self, names: list[str]) -> None:
        """Make the image hold exactly ``names``: new points start uncertain, removed ones are announced."""
        wanted = set(names)
        for name in list(self.points):
            if name not in wanted:
                del self.points[name]
                self.layout += 1
                self.seq += 1
                self._touch(name)
        for name in names:
            if name not in self.points:
                self.seq += 1
                self.points[name] = PointState(seq=self.seq)
                self.layout += 1
                self._touch(name)

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
        for cursor in self.cursors:
            cursor.dirty[name] = None
        return True

    def update_many(
        self,
        names: Sequence[str],
        values: Sequence[RawValue],
        deadbands: Sequence[float],
        quality: str,
        when: datetime,
        states: Sequence[PointState | None] | None = None,
    ) -> bool:
        """:meth:`update` of each ``names[i]`` to ``values[i]`` (never None) with ``deadbands[i]``, in order.

        The same states, ``seq`` numbers and deltas as that many calls; True if any point changed. For a poll
        answer, where calling :meth:`update` per changed value cost as much as everything else the engine does
        with it: here the per-point work is inlined and the cursors are told once, not once per point.
        ``states``: the state objects of ``names`` (:meth:`states`, at the current ``layout``), if the caller
        keeps them: no lookup by name then.
        """
        points = self.points
        seq = self.seq
        changed: list[str] = []
        targets = map(points.get, names) if states is None else states
        try:
            for name, value, deadband, state in zip(names, values, deadbands, targets, strict=True):
                if state is None:
                    continue
                old = state.value
                if old is not None and quality == state.quality:
                    if value == old:
                        continue  # not a change for _differs either, whatever the types and deadband
                    # unequal, neither NaN, no deadband: _differs would say "changed"; ask it only otherwise
                    if (deadband > 0 or old != old or value != value) and not _differs(old, value, deadband):
                        continue
                seq += 1
                state.value = value
                state.quality = quality
                state.source_time = when
                state.change_time = when
                state.seq = seq
                changed.append(name)
        finally:
            # also if a value's comparison raised: the points changed so far keep their seq and reach the cursors
            if changed:
                self.seq = seq
                touched = dict.fromkeys(changed)
                for cursor in self.cursors:
                    cursor.dirty.update(touched)
        return bool(changed)

    def put(self, name: str, value: Any, quality: str, when: datetime | None) -> None:
        """Set an entry that is not a polled point (an alarm's state, a summary) as a new change, creating it.

        The entry travels like a point (``seq``, deltas, snapshots, the sync link): ``value`` must be plain data
        (dicts, lists, numbers, strings) that msgpack and JSON carry."""
        state = self.points.get(name)
        if state is None:
            state = self.points[name] = PointState()
            self.layout += 1
        self.seq += 1
        state.value = value
        state.quality = quality
        state.source_time = when
        state.change_time = when
        state.seq = self.seq
        for cursor in self.cursors:
            cursor.dirty[name] = None

    def mark(self, names: list[str], quality: str, when: datetime) -> int:
        """Set the quality of several points (keeping their values); return how many changed."""
        return sum(self.update(name, None, quality, when) for name in names)

    def snapshot(self) -> dict[str, Any]:
        """Every point's live row (:meth:`PointState.as_live`) as ``{seq, points: {name: row}}``."""
        stamps: dict[int, int] = {}
        with _gc_paused(len(self.points)):
            return {"seq": self.seq, "points": {name: state.as_live(stamps) for name, state in self.points.items()}}

    def take_delta(self) -> dict[str, Any] | None:
        """The publisher's delta: unpublished changes since its last call; None if there are none."""
        return self._publisher.take_delta()

    # -- replication (the standby side) ----------------------------------------------------------------------------

    def snapshot_rows(self) -> dict[str, Any]:
        with _gc_paused(len(self.points)):
            rows = {
                name: (state.value, state.quality, state.source_time, state.change_time, state.seq)
                for name, state in self.points.items()
            }
        return {"seq": self.seq, "points": rows}

    def load_rows(self, seq: int, rows: dict[str, Row]) -> None:
        """Replace the whole image with a replicated snapshot taken at ``seq``."""
        points = self.points
        with _gc_paused(len(rows)):
            for name in points.keys() - rows.keys():
                del points[name]
                self.layout += 1
                self._touch(name)
            self._store_rows(rows)
        self.seq = seq

    def apply_rows(self, first: int, seq: int, rows: dict[str, Row]) -> bool:
        """Apply a replicated delta covering ``(first, seq]``; False (and nothing applied) if it does not follow."""
        if first != self.seq:
            return False
        self._store_rows(rows)
        self.seq = seq
        return True

    def _store_rows(self, rows: dict[str, Row]) -> None:
        """Set (or create) each point from its row, remove points whose row is None; tell every cursor."""
        points = self.points
        touched: dict[str, None] = {}
        for name, row in rows.items():
            if row is None:
                if points.pop(name, None) is not None:
                    self.layout += 1
                    touched[name] = None
                continue
            state = points.get(name)
            if state is None:
                points[name] = PointState(*row)
                self.layout += 1
            else:
                state.value, state.quality, state.source_time, state.change_time, state.seq = row
            touched[name] = None
        for cursor in self.cursors:
            cursor.dirty.update(touched)

    def apply_reads(self, reads: list[tuple[datetime, list[str]]]) -> int:
        """Move the read time of replicated good points, as :meth:`observe` did on the active node; return how many.

        Only forward, and only for points this image shows good: a point whose
        quality changed meanwhile arrived by a delta, which comes first.
        """
        points = self.points
        moved = 0
        for when, names in reads:
            for name in names:
                state = points.get(name)
                if (
                    state is not None
                    and state.quality == GOOD
                    and (state.source_time is None or state.source_time < when)
                ):
                    state.source_time = when
                    moved += 1
        return moved

    def states(self, names: Sequence[str]) -> list[PointState | None]:
        """The state objects of ``names`` (None for a name not held), for :meth:`observe` while ``layout`` stays."""
        get = self.points.get
        return [get(name) for name in names]

    def observe(
        self,
        names: list[str] | tuple[str, ...],
        quality: str,
        when: datetime,
        states: Sequence[PointState | None] | None = None,
    ) -> list[str]:
        """Record that ``names`` were polled at ``when`` with ``quality``, keeping each value and its source time.

        ``source_time`` is the time of a point's last successful read. With
        ``quality == GOOD`` (the points were read and their values did not
        change) the good points' ``source_time`` moves to ``when`` with no new
        ``seq`` and no delta: the stream carries changes, the image also says
        how fresh each value is. With any other quality (the read failed, or
        the value is too old) each point whose quality differs changes through
        :meth:`update`, so it gets a ``seq`` and a delta, and keeps the
        ``source_time`` of its last good read. Cursors that track reads (the
        sync link's) collect the good read times, so a standby's source times
        follow the active node's (:meth:`apply_reads`).

        Returns the names whose quality differed from ``quality``: with GOOD
        those were left alone (the caller updates them with their value);
        otherwise those were changed.

        ``states``: :meth:`states` of ``names``, taken at the current ``layout``. A poller refreshes the
        source times of every point it reads, unchanged or not, several times per stale limit: with the
        state objects at hand that costs no lookup by name.
        """
        points = self.points
        differing: list[str] = []
        if quality == GOOD and states is not None:
            regular = True
            for state in states:
                if state is not None and state.quality == GOOD:
                    state.source_time = when
                else:
                    regular = False
            if not regular:
                differing = [
                    name
                    for name, state in zip(names, states, strict=True)
                    if state is not None and state.quality != GOOD
                ]
            for cursor in self.read_trackers:
                cursor.reads[id(names)] = (names, when)  # type: ignore[index]
            return differing
        if quality == GOOD:
            for name in names:
                state = points.get(name)
                if state is None:
                    continue
                if state.quality == GOOD:
                    state.source_time = when
                else:
                    differing.append(name)
            for cursor in self.read_trackers:
                cursor.reads[id(names)] = (names, when)  # type: ignore[index]
            return differing
        for name in names:
            state = points.get(name)
            if state is None or state.quality == quality:
                continue
            source_time = state.source_time
            self.update(name, None, quality, when)
            state.source_time = source_time
            differing.append(name)
        return differing


#: bulk operations on at least this many points pause the cyclic garbage collector (see :func:`_gc_paused`)
GC_PAUSE_POINTS = 5_000
#: a delta of this many rows or more is built with the collector paused: each row is a new container, so a
#: delta of a few thousand rows would otherwise run several collections, each moving the rows made so far to an
#: older generation, whose growth then brings full collections sooner (bench/modbus_poll.py, 40,000 points)
GC_PAUSE_ROWS = 500


@contextmanager
def _gc_paused(count: int, at_least: int = GC_PAUSE_POINTS) -> Iterator[None]:
    """Pause the cyclic GC around a bulk copy of ``count`` points, if it is large.

    A snapshot of 100,000 points creates or visits hundreds of thousands of
    acyclic objects; with the collector running, that triggers repeated full
    collections of the whole heap, which cost more than the copy itself
    (bench/state_transfer.py). Nothing here creates cycles, and the
    collector's state is restored afterwards.
    """
    if count < at_least or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _differs(old: RawValue, new: RawValue, deadband: float) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return old != new
    # NaN (a sensor fault some devices report as a value) equals nothing, not even itself: compared plainly,
    # a point stuck at NaN would be a "change" on every poll, and with a deadband a move from NaN to a number
    # would never be one.
    old_nan, new_nan = old != old, new != new
    if old_nan or new_nan:
        return old_nan != new_nan
    if deadband <= 0:
        return old != new
    return abs(float(new) - float(old)) > deadband
