"""The trend spool: samples wait on local disk, append-only, in fsynced batches, while the database is away.

Layout of the spool directory (one per node):

* ``<number>.seg``: segments, appended to in order, the newest one last;
  each holds records, one per batch handed over: a header
  (:data:`HEADER`: magic, sample count, payload bytes, CRC-32 of the
  payload) and the samples as fixed-size rows (:data:`ROW`: point id,
  time in microseconds since 1970 UTC, value, quality, has-value).
* ``lock``: held (``flock``) by the process that has the spool open, so
  that two engines never append to one spool.
* ``read.pos``: where draining resumes (segment number and offset),
  replaced atomically after every record the database has taken. A crash
  between the database's commit and this file replays one record, which
  the idempotent insert stores once.

Appends are fsynced per call (one call carries every batch waiting at that
moment). The spool is bounded by :attr:`Spool.capacity` bytes: to make room
the oldest segments are deleted, and the samples in them that were not yet
drained are counted in :attr:`Spool.dropped` (the writer logs them and
records an event: a loss is never silent). On opening, a torn record at the
end of a segment (a crash during an append) is cut off, and so is garbage
where a header should be (counted as lost); a record whose CRC does not
match when it is read is skipped and its samples are counted as lost. All
methods are thread-safe (one lock); none touches the database.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import struct
import threading
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from bms.trends.storage import SampleRow

log = logging.getLogger(__name__)

MAGIC = b"BTS1"
HEADER = struct.Struct("<4sIII")
ROW = struct.Struct("<qqdBB")
POSITION_FILE = "read.pos"
LOCK_FILE = "lock"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record starts: its segment's number and the byte offset in it."""

    segment: int
    offset: int


def encode(rows: list[SampleRow]) -> bytes:
    """One record holding ``rows``."""
    pack = ROW.pack
    payload = b"".join(
        pack(point, (when - _EPOCH) // _MICROSECOND, 0.0 if value is None else value, quality, value is not None)
        for point, when, value, quality in rows
    )
    return HEADER.pack(MAGIC, len(rows), len(payload), zlib.crc32(payload)) + payload


def decode(payload: bytes) -> list[SampleRow]:
    return [
        (point, _EPOCH + timedelta(microseconds=micros), value if has_value else None, quality)
        for point, micros, value, quality, has_value in ROW.iter_unpack(payload)
    ]


class Spool:
    """Samples on local disk, bounded by ``capacity`` bytes, drained in the order they were appended."""

    def __init__(
        self, directory: Path, capacity: int, segment_bytes: int | None = None, temporary: bool = False
    ) -> None:
        self.directory = Path(directory)
        #: a stand-in nobody will open again: removed on closing if it is empty, a loud error if it is not
        self.temporary = temporary
        self.capacity = max(capacity, 4 * 1024)
        self.segment_bytes = segment_bytes or max(64 * 1024, self.capacity // 8)
        self.dropped = 0  # samples deleted to make room (or unreadable), since this object was made
        self.appended = 0
        self.drained = 0
        self._lock = threading.Lock()
        self._sizes: dict[int, int] = {}  # segment -> bytes on disk
        self._waiting: dict[int, int] = {}  # segment -> samples not yet drained
        self._read = Position(0, 0)
        self._lock_file = _lock_directory(self.directory)
        self._open()

    # ---- state ------------------------------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        """Bytes the spool's segments take on disk (what :attr:`capacity` bounds)."""
        with self._lock:
            return sum(self._sizes.values())

    @property
    def samples(self) -> int:
        """Samples waiting to be drained."""
        with self._lock:
            return sum(self._waiting.values())

    @property
    def empty(self) -> bool:
        return self.samples == 0

    def close(self) -> None:
        """Let another spool object open this directory (the lock is released)."""
        self._lock_file.close()
        if not self.temporary:
            return
        if self.samples:
            log.error("%d trend sample(s) are left in %s, which no engine will drain", self.samples, self.directory)
        else:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:016d}.seg"

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        segments = sorted(int(path.stem) for path in self.directory.glob("*.seg") if path.stem.isdigit())
        self._read = self._load_position(segments)
        for segment in segments:
            path = self._path(segment)
            if segment < self._read.segment:  # drained before a crash, not yet deleted
                path.unlink(missing_ok=True)
                continue
            start = self._read.offset if segment == self._read.segment else 0
            waiting, end, torn = _scan(path, start)
            size = path.stat().st_size
            if end < size:
                if not torn:  # not an append cut short by a crash: the disk holds garbage there
                    lost = (size - end) // ROW.size
                    self.dropped += lost
                    log.error("trend spool %s: unreadable from byte %d; about %d sample(s) lost", path, end, lost)
                log.warning("trend spool %s: cut off at byte %d", path, end)
                with open(path, "r+b") as handle:
                    handle.truncate(end)
                    os.fsync(handle.fileno())
            self._sizes[segment] = path.stat().st_size
            self._waiting[segment] = waiting
        if self._read.segment not in self._sizes:
            self._read = Position(min(self._sizes, default=self._read.segment), 0)
        if self.samples:
            log.warning("trend spool %s holds %d sample(s) from before: written first", self.directory, self.samples)

    def _load_position(self, segments: list[int]) -> Position:
        try:
            segment, offset = (self.directory / POSITION_FILE).read_text().split()
            return Position(int(segment), int(offset))
        except (FileNotFoundError, ValueError):
            return Position(segments[0] if segments else 0, 0)

    # ---- appending ----------------------------------------------------------------------------------------------

    def append(self, batches: list[list[SampleRow]]) -> int:
        """Append ``batches`` (oldest first) and fsync; return how many samples were dropped to make room."""
        records = [encode(rows) for rows in batches if rows]
        if not records:
            return 0
        counts = [HEADER.unpack_from(record)[1] for record in records]
        with self._lock:
            dropped = 0
            while records and sum(map(len, records)) > self.capacity:  # more than the whole spool holds
                records.pop(0)
                dropped += counts.pop(0)
            dropped += self._make_room(sum(map(len, records)))
            self._write(records, counts)
            self.appended += sum(counts)
            self.dropped += dropped
        return dropped

    def _write(self, records: list[bytes], counts: list[int]) -> None:
        if not self._sizes or self._sizes[max(self._sizes)] >= self.segment_bytes:
            self._new_segment()
        segment = max(self._sizes)
        handle = open(self._path(segment), "ab")  # a segment may change mid-way: closed below
        try:
            for record, count in zip(records, counts, strict=True):
                if self._sizes[segment] >= self.segment_bytes:
                    handle.flush()
                    os.fsync(handle.fileno())
                    handle.close()
                    segment = self._new_segment()
                    handle = open(self._path(segment), "ab")
                handle.write(record)
                self._sizes[segment] += len(record)
                self._waiting[segment] += count
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            handle.close()

    def _new_segment(self) -> int:
        """Start the next segment (numbers are never reused) and make its creation durable."""
        segment = max(self._sizes, default=self._read.segment - 1) + 1
        self._path(segment).touch()
        self._sizes[segment] = 0
        self._waiting[segment] = 0
        if self._read.segment not in self._sizes:
            self._read = Position(min(self._sizes), 0)
        _fsync_directory(self.directory)
        return segment

    def _make_room(self, need: int) -> int:
        """Delete the oldest segments until ``need`` more bytes fit; the samples lost with them."""
        dropped = 0
        while self._sizes and sum(self._sizes.values()) + need > self.capacity:
            oldest = min(self._sizes)
            if oldest == max(self._sizes):
                self._new_segment()  # never write into the segment being deleted
            dropped += self._waiting.pop(oldest)
            del self._sizes[oldest]
            self._path(oldest).unlink(missing_ok=True)
            if self._read.segment == oldest:
                self._read = Position(min(self._sizes), 0)
                self._save_position()
        return dropped

    # ---- draining -----------------------------------------------------------------------------------------------

    def peek(self) -> tuple[Position, list[SampleRow]] | None:
        """The oldest record not yet drained (its position and samples), or None if there is none.

        A record whose CRC does not match is skipped and its samples counted as dropped."""
        with self._lock:
            while True:
                position = self._read
                size = self._sizes.get(position.segment)
                if size is None:
                    return None
                if position.offset >= size:
                    if position.segment == max(self._sizes):
                        return None  # everything is drained; the newest segment stays for appends
                    self._finish_segment(position.segment)
                    continue
                count, rows = self._read_record(position)
                if rows is not None:
                    return position, rows
                log.error("trend spool: the record at %s is corrupt; its %d sample(s) are lost", position, count)
                self.dropped += count
                self._waiting[position.segment] = max(0, self._waiting.get(position.segment, 0) - count)
                self._read = Position(position.segment, position.offset + HEADER.size + count * ROW.size)
                self._save_position()

    def _read_record(self, position: Position) -> tuple[int, list[SampleRow] | None]:
        """The record at ``position``: its sample count, and its samples (None if its CRC does not match).

        Its header is sound: every record was checked when the spool was opened or was appended since."""
        with open(self._path(position.segment), "rb") as handle:
            handle.seek(position.offset)
            _, count, size, crc = HEADER.unpack(handle.read(HEADER.size))
            payload = handle.read(size)
        if zlib.crc32(payload) != crc:
            return count, None
        return count, decode(payload)

    def consume(self, position: Position, count: int) -> None:
        """The database took the record at ``position`` (``count`` samples): move on, durably.

        A position that is no longer the oldest (its segment was deleted to make room meanwhile) changes
        nothing."""
        with self._lock:
            if position != self._read:
                return
            self._read = Position(position.segment, position.offset + HEADER.size + count * ROW.size)
            self._waiting[position.segment] = max(0, self._waiting.get(position.segment, 0) - count)
            self.drained += count
            if self._read.offset >= self._sizes.get(position.segment, 0) and position.segment != max(self._sizes):
                self._finish_segment(position.segment)
            else:
                self._save_position()

    def _finish_segment(self, segment: int) -> None:
        del self._sizes[segment]
        self._waiting.pop(segment, None)
        self._read = Position(min(self._sizes), 0)
        self._save_position()
        self._path(segment).unlink(missing_ok=True)

    def _save_position(self) -> None:
        path = self.directory / POSITION_FILE
        temporary = path.with_suffix(".tmp")
        with open(temporary, "w") as handle:
            handle.write(f"{self._read.segment} {self._read.offset}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_directory(self.directory)


def _scan(path: Path, start: int) -> tuple[int, int, bool]:
    """Samples in the records of ``path`` from ``start`` whose headers are sound, where those records end, and
    whether what follows is an append cut short (a crash) rather than garbage. CRCs are checked when read."""
    samples = 0
    at = start
    with open(path, "rb") as handle:
        handle.seek(start)
        while True:
            head = handle.read(HEADER.size)
            if len(head) < HEADER.size:
                return samples, at, len(head) > 0
            magic, count, size, _ = HEADER.unpack(head)
            if magic != MAGIC or size != count * ROW.size:
                return samples, at, False
            if len(handle.read(size)) < size:
                return samples, at, True
            samples += count
            at += HEADER.size + size


class SpoolInUse(RuntimeError):
    """Another process (or spool object) holds this spool directory: two writers would corrupt it."""


def _lock_directory(directory: Path) -> IO[bytes]:
    """Hold an exclusive lock on ``directory`` for as long as the returned file stays open."""
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / LOCK_FILE, "ab")  # kept open: the lock lives as long as the spool
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SpoolInUse(
            f"the trend spool {directory} is in use by another process; give each node its own "
            "(BMS_TREND_SPOOL_DIR or BMS_DATA_DIR)"
        ) from None
    return handle


def _fsync_directory(directory: Path) -> None:
    """Make a file's creation, removal or rename in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
