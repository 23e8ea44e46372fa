"""Replication over the sync link: process image, configuration and history.

* **Image** (active → standby): on ``sync_request`` the active node sends a
  snapshot in chunks (``snap``), then every change as ordered deltas
  (``delta``, ``{from, seq, points}``) from its own image cursor, every few
  milliseconds. The standby keeps the active node's ``seq`` numbers; a delta
  that does not follow (a gap) makes it ask for a new snapshot. Read times
  that moved without a change (a point read again, same value) follow about
  once a second (``reads``), so the standby's source times are the active
  node's too, without a seq or a delta per read.
* **Configuration** (active → standby): the whole dump (``config``) after
  each snapshot and whenever the configuration revision moves; both sides
  compare hashes (heartbeats carry them) for *Verified*.
* **History** (both ways): cursors on link-up, then batches of rows above
  the peer's cursor, acknowledged by the peer (:mod:`redundancy.history`).
  A batch the peer could not store is refused (``history_nack``) and rows
  not acknowledged in time are sent again; the backlog counts every row the
  peer has not acknowledged (ADR 0011).

Data from a sender whose epoch is lower than ours is rejected and logged:
a deposed active node cannot overwrite the state of its successor.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bms.engine import bus
from bms.engine.dbhealth import DatabaseUnavailable
from bms.points.models import ConfigRevision
from redundancy import configsync, history
from redundancy.roles import OWNS_FIELD, Role

if TYPE_CHECKING:
    from bms.control.models import Command
    from bms.engine.image import ImageCursor
    from bms.engine.runner import Engine
    from redundancy.service import PairService

log = logging.getLogger(__name__)
SNAPSHOT_CHUNK = 20_000
STREAM_INTERVAL = 0.005
READS_INTERVAL = 1.0
HISTORY_INTERVAL = 0.2
#: while rows flow, the rows waiting for the peer are counted at most this often (a count asks every table: with
#: 50 API writers on a pair, counting on every round took 40 % of the rounds' database time and the commands'
#: plans waited behind it); between counts the backlog only grows (or drops to 0 once every sent row is
#: acknowledged and nothing new waits), so it never reads 0 while rows are unacknowledged
BACKLOG_COUNT_INTERVAL = 0.5
CONFIG_CHECK_INTERVAL = 0.5
#: the standby is caught up with the history when it holds every row the active node had this many resend delays
#: ago (see Replicator.history_current): at 100,000 points the trend samples never leave the backlog at 0 for long
CURRENT_WITHIN_RESENDS = 2
#: a stamp seen more than this beyond the bound does not bound the lag (counts paused meanwhile)
STAMP_SEEN_SLACK = 5.0
#: seconds between full configuration hashes (between them, only a moved revision makes one)
FULL_CONFIG_HASH_INTERVAL = 60.0
DATABASE_BOUND = frozenset({"config", "history", "sync_request"})


class Replicator:
    """Both directions of replication for one node."""

    def __init__(self, service: PairService, engine: Engine) -> None:
        self.service = service
        self.engine = engine
        self.image = engine.image
        # active side
        self.stream: ImageCursor | None = None
        self.sent_config_revision: int | None = None
        self._config_checked = 0.0
        # standby side
        self.image_synced = False
        self.requested_at: float | None = None
        self._snapshot_parts: dict[int, dict[str, Any]] = {}
        self._snapshot_part_at = float("-inf")  # monotonic time the last part of a snapshot arrived
        self.config_hash = ""
        self._config_hashed = float("-inf")  # monotonic time of the last full configuration hash
        self.applied_at: float | None = None
        self.lag_ms: float | None = None
        self.deltas_applied = 0
        self.snapshots_applied = 0
        self.stale_rejected = 0
        # history, both ways
        self.peer_cursors: history.Cursors | None = None  # what we believe the peer holds (sent, optimistic)
        self.acked: history.Cursors = {}
        self._acked_known = False  # acked came from the peer's cursors at least once (else the backlog is unknown)
        # Rows the peer has not acknowledged (ADR 0011): above ``acked``, not above ``peer_cursors``.
        self.backlog = 0
        self._counted_at = float("-inf")  # monotonic time of the last count of the rows waiting for the peer
        # The peer holds every row of ours older than CURRENT_WITHIN_RESENDS resend delays (probed at each count).
        self.history_current = False
        self._stamps_seen: collections.deque[tuple[float, int]] = collections.deque()  # (monotonic, last stamp)
        self.quarantined = 0
        self.resends = 0
        self.store_failures = 0
        # Per (table, origin) with rows sent above its acknowledged cursor: since when its acknowledgement has not
        # moved. Per stream: acknowledgements of a busy table (trend samples) must not hold back the resend of
        # another table's batch that was lost with nothing behind it in its stream (ADR 0011).
        self._unacked_since: dict[tuple[str, str], float] = {}
        # per (table, origin) with rows not acknowledged: since when no acknowledgement of that stream moved
        self._waiting_since: dict[tuple[str, str], float] = {}
        # receiver side: per table and origin, everything up to here is stored (or deliberately skipped)
        self.received: history.Cursors = {}
        self.rows_sent = 0
        self.rows_received = 0
        self._cursors_due = False
        self._history_wake = asyncio.Event()
        # Messages whose handling waits for the database are queued, so a slow or
        # stalled database never delays reading the link (and its heartbeats).
        self._database_work: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._acked_changed = asyncio.Event()
        # the command barrier (see command_barrier)
        self.barrier_dropped = False
        self._dropped_at_seq = 0
        self.sent_unconfirmed = 0

    def tasks(self) -> list[asyncio.Task]:
        return [
            asyncio.create_task(self._stream_loop(), name="pair-stream"),
            asyncio.create_task(self._history_loop(), name="pair-history"),
            asyncio.create_task(self._database_work_loop(), name="pair-db-work"),
        ]

    # -- state -----------------------------------------------------------------------------------------------------

    @property
    def partner_hash(self) -> str:
        return (self.service.partner.heartbeat or {}).get("config_hash") or ""

    @property
    def config_verified(self) -> bool:
        return bool(self.config_hash) and self.config_hash == self.partner_hash

    @property
    def resend_after(self) -> float:
        """How long sent rows may stay unacknowledged before they are sent again."""
        return max(2.0, self.service.config.timeout)

    @property
    def history_stuck(self) -> bool:
        """Some stream's rows wait for the peer and its acknowledgement has not moved for longer than the resend
        delay (per stream: traffic on other tables must not hide one that is stuck)."""
        now = time.monotonic()
        return any(now - since > self.resend_after for since in self._waiting_since.values())

    def _note_waiting(self, waiting: dict[tuple[str, str], int]) -> None:
        now = time.monotonic()
        self._waiting_since = {stream: self._waiting_since.get(stream, now) for stream in waiting}
        self.backlog = sum(waiting.values())
        self._counted_at = now

    def _note_sent(self, batches: list[dict[str, Any]]) -> None:
        """A round that sent ``batches`` uncounted: the backlog is at least what it sent, until the next count."""
        now = time.monotonic()
        for batch in batches:
            self._waiting_since.setdefault((batch["table"], batch["origin"]), now)
        self.backlog = max(self.backlog, sum(len(batch["rows"]) for batch in batches))

    def _count_due(self) -> bool:
        # A backlog of 0 is counted at once when rows flow again (it must not stay 0 while rows wait).
        return self.backlog == 0 or time.monotonic() - self._counted_at >= BACKLOG_COUNT_INTERVAL

    @property
    def caught_up(self) -> bool:
        """Image in step with the active partner, configuration verified, and its history held: nothing waits
        for us, or only rows younger than the partner's bound (``history_current`` in its heartbeat)."""
        heartbeat = self.service.partner.heartbeat or {}
        history_held = int(heartbeat.get("backlog", 0) or 0) == 0 or bool(heartbeat.get("history_current"))
        return self.image_synced and self.config_verified and history_held

    async def _probe_lag(self) -> None:
        """After a count: is the peer missing any row of ours older than the bound? (``history_current``)

        Its acknowledgements are compared with the last stamp seen at least the bound ago: rows stamped up to
        there were committed then. With rows always flowing (10,000 trend samples a second) the backlog is
        rarely 0 at the moment a heartbeat reads it; this says the peer is behind by at most the bound.
        """
        now = time.monotonic()
        node = self.service.config.node
        bound = CURRENT_WITHIN_RESENDS * self.resend_after
        while len(self._stamps_seen) > 1 and self._stamps_seen[1][0] <= now - bound:
            self._stamps_seen.popleft()  # the newest stamp old enough is kept, older ones are not needed
        if self.backlog == 0:
            # Everything acknowledged: the highest of our stamps it acknowledged is where we stood (no query).
            self.history_current = True
            self._stamps_seen.append((now, max((tops.get(node, 0) for tops in self.acked.values()), default=0)))
            return
        oldest = self._stamps_seen[0] if self._stamps_seen else None
        # Old enough to bound the lag, and recent enough to mean it (counts come every BACKLOG_COUNT_INTERVAL).
        usable = oldest is not None and now - bound - STAMP_SEEN_SLACK <= oldest[0] <= now - bound
        watermark = oldest[1] if usable else None
        top, behind = await self.engine.run_in_db(history.lag_probe, self.acked, node, watermark)
        self._stamps_seen.append((now, top))
        self.history_current = not behind

    def link_up(self) -> None:
        self._cursors_due = True
        self._history_wake.set()

    def link_down(self) -> None:
        # Whatever was in flight is lost: the active node stops streaming and
        # the standby starts again from a snapshot when the link is back.
        self._stop_stream()
        self.history_current = False
        self._stamps_seen.clear()
        self.image_synced = False
        self.peer_cursors = None
        self.requested_at = None
        self._snapshot_parts.clear()

    def became_active(self) -> None:
        self.image_synced = False
        self.requested_at = None

    def became_passive(self) -> None:
        self._stop_stream()
        self.image_synced = False
        self.requested_at = None

    def _stop_stream(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    # -- periodic work (called from the role loop) -----------------------------------------------------------------

    async def tick(self) -> None:
        machine = self.service.machine
        now = time.monotonic()
        if machine.role == Role.ACTIVE:
            if now - self._config_checked >= CONFIG_CHECK_INTERVAL:
                self._config_checked = now
                await self._refresh_config_hash()
                if self.stream is not None:
                    await self._send_config_if_changed()
            return
        peer = self.service.partner.view(now)
        partner_in_control = (
            peer is not None and peer.role in OWNS_FIELD and peer.silent_for < self.service.config.timeout
        )
        if machine.role in (Role.SYNCING, Role.STANDBY) and partner_in_control and self.service.connected:
            patience = max(self.service.config.timeout, 1.0)
            due = self.requested_at is None or now - self.requested_at > patience
            # A large snapshot (100,000 points: several parts of 20,000) can take longer than that to arrive; asking
            # again while its parts still came made the active node send a second one from the start.
            receiving = bool(self._snapshot_parts) and now - self._snapshot_part_at < patience
            if not self.image_synced and due and not receiving:
                self.requested_at = now
                await self.service.send("sync_request")
        if not self.config_hash or now - self._config_checked >= 5.0:
            self._config_checked = now
            await self._refresh_config_hash()

    async def _refresh_config_hash(self) -> None:
        # Every check reads the revision; the whole configuration is read and hashed again only when it moved, or
        # once a minute (an edit behind the application's back). At 40,000 points a full hash costs ~0.8 s of CPU.
        now = time.monotonic()
        if now - self._config_hashed >= FULL_CONFIG_HASH_INTERVAL:
            self._config_hashed = now
            self.config_hash = await self.engine.run_in_db(configsync.config_hash)
        else:
            self.config_hash = await self.engine.run_in_db(configsync.config_hash_of_revision)

    # -- messages --------------------------------------------------------------------------------------------------

    async def on_message(self, body: dict[str, Any]) -> None:
        kind = body["t"]
        handler = getattr(self, f"_on_{kind}", None)
        if handler is None:
            log.warning("sync link: unknown message type %r ignored", kind)
            return
        if kind in ("snap", "delta", "reads", "config") and not self._accept_state(body):
            return
        if kind in DATABASE_BOUND:
            self._database_work.put_nowait(body)
            return
        await handler(body)

    async def _database_work_loop(self) -> None:
        while True:
            body = await self._database_work.get()
            try:
                await getattr(self, f"_on_{body['t']}")(body)
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:
                pass  # logged once per outage by the engine's database health
            except Exception:
                log.exception("handling a replicated %s message failed", body["t"])

    def _accept_state(self, body: dict[str, Any]) -> bool:
        machine = self.service.machine
        if machine.role in OWNS_FIELD:
            return False  # a node in control never takes state from its partner
        if int(body.get("e", -1)) < machine.epoch:
            self.stale_rejected += 1
            if self.stale_rejected == 1 or self.stale_rejected % 100 == 0:
                log.warning(
                    "sync link: rejected %s from %s with stale epoch %s (this node: %d); %d rejected so far",
                    body["t"],
                    body.get("node"),
                    body.get("e"),
                    machine.epoch,
                    self.stale_rejected,
                )
            return False
        return True

    async def _on_sync_request(self, body: dict[str, Any]) -> None:
        if self.service.machine.role != Role.ACTIVE:
            return
        self._stop_stream()
        snapshot = self.image.snapshot_rows()  # taken without awaiting: consistent at one seq
        self.stream = self.image.cursor(track_reads=True)
        names = list(snapshot["points"])
        parts = max(1, -(-len(names) // SNAPSHOT_CHUNK))
        for part in range(parts):
            chunk = {
                name: snapshot["points"][name] for name in names[part * SNAPSHOT_CHUNK : (part + 1) * SNAPSHOT_CHUNK]
            }
            if not await self.service.send("snap", seq=snapshot["seq"], part=part, parts=parts, points=chunk):
                self._stop_stream()
                return
        if self.config_verified:
            # The partner holds this configuration already (its heartbeat carries the same hash): applying it again
            # took a 100,000-point standby half a minute of its database thread, twice when it asked for a second
            # snapshot, while the history it had to store waited (bench/scale.py).
            self.sent_config_revision = await self.engine.run_in_db(ConfigRevision.current)
        else:
            self.sent_config_revision = None
            await self._send_config_if_changed()
        log.info("sent a snapshot of %d point(s) at seq %d to %s", len(names), snapshot["seq"], body.get("node"))

    async def _on_snap(self, body: dict[str, Any]) -> None:
        parts, part = int(body["parts"]), int(body["part"])
        if part == 0:
            self._snapshot_parts = {}
        self._snapshot_parts[part] = body["points"]
        self._snapshot_part_at = time.monotonic()
        if len(self._snapshot_parts) < parts:
            return
        rows: dict[str, Any] = {}
        for index in range(parts):
            rows.update(self._snapshot_parts.pop(index, {}))
        self.image.load_rows(int(body["seq"]), rows)
        await self._tell_clients_to_resync()
        self.image_synced = True
        self.snapshots_applied += 1
        self.applied_at = time.monotonic()
        log.info("image replicated: %d point(s) at seq %d", len(rows), self.image.seq)

    async def _tell_clients_to_resync(self) -> None:
        # The image jumped (its seq may even be lower than what clients saw
        # from this node before), so deltas cannot bridge it: clients start over.
        self.engine.publisher.notify()
        try:
            await self.engine.layer.group_send(bus.LIVE_GROUP, {"type": bus.LIVE_RESET})
        except Exception as exc:
            log.warning("could not ask live clients to resync: %s", exc)

    async def _on_delta(self, body: dict[str, Any]) -> None:
        if not self.image_synced:
            return
        if not self.image.apply_rows(int(body["from"]), int(body["seq"]), body["points"]):
            log.warning(
                "replicated delta from %s does not follow seq %d; asking for a snapshot", body["from"], self.image.seq
            )
            self.image_synced = False
            self.requested_at = None
            return
        self.deltas_applied += 1
        self.applied_at = time.monotonic()
        sent = body.get("ts")
        if isinstance(sent, datetime):
            # ``ts`` is the sender's wall clock: take the measured offset out, so a skewed clock is no lag.
            offset = self.service.clock.offset or 0.0
            self.lag_ms = ((datetime.now(UTC) - sent).total_seconds() + offset) * 1000
        self.engine.publisher.notify()

    async def _on_reads(self, body: dict[str, Any]) -> None:
        if self.image_synced:
            self.image.apply_reads(body["reads"])  # [when, names] pairs as msgpack gives them

    async def _on_config(self, body: dict[str, Any]) -> None:
        try:
            # "packed" (deflated msgpack) since large sites outgrew one frame; "dump" from a partner before that
            dump = (
                body["dump"] if "dump" in body else await self.engine.run_in_db(configsync.unpack_dump, body["packed"])
            )
            self.config_hash = await self.engine.run_in_db(configsync.apply_config, dump)
        except Exception:
            log.exception("applying the replicated configuration failed; keeping this node's configuration")
            return
        if self.config_hash != body.get("hash"):
            log.error("replicated configuration applied but its hash differs from the active node's")
        else:
            log.info("configuration revision %s replicated and verified", dump.get("revision"))

    async def _send_config_if_changed(self) -> None:
        revision = await self.engine.run_in_db(ConfigRevision.current)
        if revision == self.sent_config_revision:
            return
        dump = await self.engine.run_in_db(configsync.dump_config)
        packed = await self.engine.run_in_db(configsync.pack_dump, dump)
        self.config_hash = await self.engine.run_in_db(configsync.hash_dump, dump)
        if await self.service.send("config", packed=packed, hash=self.config_hash):
            self.sent_config_revision = revision

    async def _stream_loop(self) -> None:
        reads_sent = time.monotonic()
        while True:
            await asyncio.sleep(STREAM_INTERVAL)
            now = time.monotonic()
            with_reads = now - reads_sent >= READS_INTERVAL
            if with_reads:
                reads_sent = now
            await self.flush_stream(with_reads)

    async def flush_stream(self, with_reads: bool = True) -> None:
        """Send the pending changes (and, ``with_reads``, the read times), in that order: a read time applies
        only to points the standby shows good, so the changes must be there first."""
        if self.stream is None:
            return
        delta = self.stream.take_rows()
        if delta is not None and not await self.service.send("delta", ts=datetime.now(UTC), **delta):
            self._stop_stream()  # the partner will ask for a fresh snapshot when it is back
            return
        reads = self.stream.take_reads() if with_reads else None
        if reads and not await self.service.send("reads", reads=reads):
            self._stop_stream()

    # -- history ---------------------------------------------------------------------------------------------------

    async def _send_cursors(self) -> None:
        if not self.service.config.db_sync:
            return
        cursors = await self.engine.run_in_db(history.local_cursors)
        # What we announce is what we hold: batches from the peer must continue from there (see _on_history).
        for table, origins in cursors.items():
            held = self.received.setdefault(table, {})
            for origin, top in origins.items():
                held[origin] = max(held.get(origin, 0), int(top))
        await self.service.send("cursors", cursors=cursors)

    async def _on_cursors(self, body: dict[str, Any]) -> None:
        cursors = body.get("cursors") or {}
        self.peer_cursors = {table: dict(origins) for table, origins in cursors.items()}
        self.acked = {table: dict(origins) for table, origins in cursors.items()}
        self._acked_known = True
        self._unacked_since.clear()
        self._history_wake.set()

    async def _on_history(self, body: dict[str, Any]) -> None:
        acks, nacks = [], []
        for batch in body.get("batches", []):
            table, origin = batch["table"], batch["origin"]
            held = self.received.setdefault(table, {}).get(origin, 0)
            after = batch.get("after")
            if after is not None and int(after) > held:
                # An earlier batch of this stream was not stored: storing this one would leave a hole below
                # our top that no cursor could ever see again. Refuse it; the sender rewinds to what we hold.
                nacks.append([table, origin, held])
                continue
            if acks and history.is_bulk(table):
                # What came before the bulk rows (commands the active node's barrier waits for, alarms, events)
                # is acknowledged now, not after thousands of trend samples are stored.
                await self.service.send("history_ack", acks=acks)
                acks = []
            try:
                top = await self.engine.run_in_db(history.store_rows, batch)
            except Exception as exc:
                self.store_failures += 1
                if self.store_failures == 1 or self.store_failures % 100 == 0:
                    log.warning(
                        "storing replicated %s rows of %s failed (%s: %s); the partner sends them again (failure %d)",
                        table,
                        origin,
                        type(exc).__name__,
                        exc,
                        self.store_failures,
                        exc_info=self.store_failures == 1,
                    )
                nacks.append([table, origin, held])
                continue
            rows = batch["rows"]
            last = int(rows[-1][batch["fields"].index("origin_seq")]) if rows else 0
            # The whole batch is processed: rows stored, and older versions skipped because a newer one is here.
            top = max(held, int(top), last)
            self.received[table][origin] = top
            self.rows_received += len(rows)
            acks.append([table, origin, top])
            # The sender holds what it sent: never echo these rows back to it, nor count them as waiting for it.
            # Only what it sent (``last``), never ``top`` (what this node holds): the batch may be this node's
            # own rows coming back (the peer queued a round before it noted storing them), and this node may
            # have written more since; taking ``top`` would mark those as held by the peer, and they would not
            # be sent until the next link-up (a step-down event after a split, lost so).
            if self.peer_cursors is not None:
                sent = self.peer_cursors.setdefault(table, {})
                sent[origin] = max(sent.get(origin, 0), last)
            stored = self.acked.setdefault(table, {})
            stored[origin] = max(stored.get(origin, 0), last)
        if acks:
            await self.service.send("history_ack", acks=acks)
        if nacks:
            await self.service.send("history_nack", nacks=nacks)

    async def _on_history_ack(self, body: dict[str, Any]) -> None:
        moved = []
        for table, origin, top in body.get("acks", []):
            current = self.acked.setdefault(table, {})
            if int(top) > current.get(origin, 0):
                current[origin] = int(top)
                moved.append((table, origin))
        if moved:
            now = time.monotonic()
            for stream in moved:
                if stream in self._waiting_since:
                    self._waiting_since[stream] = now
                table, origin = stream
                if (self.peer_cursors or {}).get(table, {}).get(origin, 0) > self.acked[table][origin]:
                    self._unacked_since[stream] = now  # progress: its delay starts again
                else:
                    self._unacked_since.pop(stream, None)
            # A round now: with everything acknowledged the backlog is 0 at once (no count needed); otherwise it
            # is counted again within BACKLOG_COUNT_INTERVAL, and until then may still include acknowledged rows.
            self._history_wake.set()
        self._acked_changed.set()

    async def _on_history_nack(self, body: dict[str, Any]) -> None:
        """The partner could not store a batch (or it did not continue what it holds): send from its cursor again."""
        for table, origin, held in body.get("nacks", []):
            stored = self.acked.setdefault(table, {})
            stored[origin] = max(stored.get(origin, 0), int(held))
            sent = (self.peer_cursors or {}).get(table)
            if sent is not None and sent.get(origin, 0) > stored[origin]:
                sent[origin] = stored[origin]
                self.resends += 1
            self._unacked_since.pop((table, origin), None)  # nothing of it is outstanding now: it is sent again
        self._counted_at = float("-inf")  # rare, and it moves what waits: the next round counts again
        self._acked_changed.set()

    def _outstanding(self) -> bool:
        """Rows were sent above what the peer acknowledged."""
        return any(
            top > self.acked.get(table, {}).get(origin, 0)
            for table, origins in (self.peer_cursors or {}).items()
            for origin, top in origins.items()
        )

    def _bulk_in_flight(self) -> int:
        """Stamps of the bulk tables (trend samples) sent above what the peer acknowledged (at least their rows).

        Each acknowledgement wakes a round, so a sender held back by :data:`history.BULK_WINDOW` goes on as soon
        as the peer has stored some; the other tables' rows are never held back by it.
        """
        return sum(
            max(0, top - self.acked.get(table, {}).get(origin, 0))
            for table, origins in (self.peer_cursors or {}).items()
            if history.is_bulk(table)
            for origin, top in origins.items()
        )

    def _rewind_unacknowledged(self, now: float) -> None:
        """Rows sent but not acknowledged within the resend delay are sent again from the acknowledged cursors.

        Per stream: each stream's delay runs from its first unacknowledged send or its last acknowledgement.
        """
        if self.peer_cursors is None:
            return
        rewound = []
        for stream, since in list(self._unacked_since.items()):
            table, origin = stream
            sent = self.peer_cursors.get(table, {})
            stored = self.acked.get(table, {}).get(origin, 0)
            if sent.get(origin, 0) <= stored:
                del self._unacked_since[stream]  # acknowledged (or rewound) meanwhile
            elif now - since >= self.resend_after:
                sent[origin] = stored
                del self._unacked_since[stream]
                rewound.append(f"{table}/{origin} after {stored}")
        if rewound:
            self.resends += 1
            log.warning(
                "history rows sent to the partner were not acknowledged within %.1f s; sending them again: %s",
                self.resend_after,
                ", ".join(rewound),
            )

    async def _history_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._history_wake.wait(), HISTORY_INTERVAL)
            except TimeoutError:
                pass
            self._history_wake.clear()
            try:
                if self._cursors_due:
                    self._cursors_due = False
                    await self._send_cursors()
                await self.push_history()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:
                pass  # logged once per outage by the engine's database health
            except Exception:
                log.exception("history replication round failed; retrying")

    async def push_history(self) -> None:
        if not self.service.config.db_sync:
            self._note_waiting({})
            return
        if self.peer_cursors is None:
            if self._acked_known and self._count_due():
                # No link: the rows keep waiting for the peer, and the backlog says how many (counted at most
                # every BACKLOG_COUNT_INTERVAL, as while rows flow: this runs every round, 5 times a second).
                self._note_waiting(await self.engine.run_in_db(history.waiting, self.acked))
            return
        self._rewind_unacknowledged(time.monotonic())
        outgoing = await self.engine.run_in_db(
            history.outgoing,
            self.peer_cursors,
            self.acked,
            self._outstanding(),
            history.BATCH,
            self._count_due(),
            max(0, history.BULK_WINDOW - self._bulk_in_flight()),
        )
        if outgoing.waiting is not None:
            self._note_waiting(outgoing.waiting)
            await self._probe_lag()
        else:
            self._note_sent(outgoing.batches)
        self.quarantined = outgoing.quarantined
        if not outgoing.batches or self.peer_cursors is None:  # the link may have gone while the database worked
            return
        if not await self.service.send("history", batches=outgoing.batches):
            return
        now = time.monotonic()
        for batch in outgoing.batches:
            top = batch["rows"][-1][batch["fields"].index("origin_seq")]
            sent = self.peer_cursors.setdefault(batch["table"], {})
            sent[batch["origin"]] = max(sent.get(batch["origin"], 0), top)
            self.rows_sent += len(batch["rows"])
            self._unacked_since.setdefault((batch["table"], batch["origin"]), now)
        self._history_wake.set()  # there may be more: the next round sends it, or finds nothing and waits

    async def _drain_history(self, within: float) -> None:
        """Send history rounds until the peer has acknowledged every row (or ``within`` seconds have passed)."""
        deadline = time.monotonic() + within
        self._counted_at = float("-inf")  # count at once: the backlog said before may be old
        while True:
            await self.push_history()
            if self.peer_cursors is None or (self.backlog == 0 and not self._outstanding()):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning(
                    "handing over with %d history row(s) not yet acknowledged by the partner; they follow from "
                    "this node as standby",
                    self.backlog,
                )
                return
            self._acked_changed.clear()
            try:
                await asyncio.wait_for(self._acked_changed.wait(), min(HISTORY_INTERVAL, remaining))
            except TimeoutError:
                pass
            self._counted_at = float("-inf")

    async def command_barrier(self, command: Command) -> bool:
        """Wait until the standby has stored this version of the command, within bounds; True: send it.

        The barrier exists so that a standby taking over finds every command
        whose write may have started as ``executing`` and reports it
        ``unknown`` rather than "not sent". It never decides *whether* the
        command is sent twice: a command is bound to the node and epoch that
        accepted it, so no other node ever sends it (ADR 0008). Its bounds
        (ADR 0007, revised): no wait without a standby in sync; a standby not
        heard is waited for only until it has been silent for one timeout;
        a standby that is heard but does not confirm within one timeout is
        dropped from the barrier (the write goes ahead, logged and counted)
        until it has acknowledged everything again.
        """
        if self.peer_cursors is None or not self.service.connected:
            return True  # no standby in sync (a cut link without witness is the documented residual risk)
        if self.barrier_dropped:
            if self.acked.get("control.command", {}).get(command.origin, 0) < self._dropped_at_seq:
                self.sent_unconfirmed += 1
                return True
            self.barrier_dropped = False
            log.info("the standby confirms commands again; writes wait for it again")
        self._history_wake.set()
        timeout = self.service.config.timeout
        deadline = time.monotonic() + timeout
        while self.acked.get("control.command", {}).get(command.origin, 0) < command.origin_seq:
            now = time.monotonic()
            heard = self.service.partner.last_heard
            silent_until = (heard if heard is not None else now - timeout) + timeout
            if now >= silent_until or not self.service.connected:
                self.sent_unconfirmed += 1
                log.warning(
                    "command %s: the standby has been silent for the timeout; sending without its confirmation",
                    command.command_id,
                )
                return True
            if now >= deadline:
                # Back in the barrier once the standby has stored this command (and so all before it).
                self.barrier_dropped = True
                self._dropped_at_seq = command.origin_seq
                self.sent_unconfirmed += 1
                log.warning(
                    "command %s: the standby is heard but did not confirm within %.0f ms; sending without it, and "
                    "not waiting for it again until it has caught up",
                    command.command_id,
                    timeout * 1000,
                )
                return True
            self._acked_changed.clear()
            try:
                await asyncio.wait_for(self._acked_changed.wait(), min(deadline, silent_until) - now)
            except TimeoutError:
                pass
        return True

    # -- handover --------------------------------------------------------------------------------------------------

    async def hand_over(self) -> None:
        """Field I/O has stopped: send the last changes and history, then the handover with epoch + 1.

        The partner may have been caught up with a lag (``history_current``): the history is sent until it has
        acknowledged every row, for at most half the handover's time; what is left then (logged) follows after
        the handover, from this node as standby (history flows both ways).
        """
        await self.flush_stream()
        await self._drain_history(self.service.config.handover_timeout / 2)
        self._stop_stream()
        epoch = self.service.machine.epoch + 1
        await self.service.send("handover", epoch=epoch, final_seq=self.image.seq)
        log.info("handover sent: epoch %d, final seq %d", epoch, self.image.seq)
