"""The live hub: one subscriber per web process to the engine's live stream, fanned out to every websocket.

Each connection used to hold its own channel-layer subscription, ask the
engine for its own snapshot and encode its own JSON: about 250 µs of CPU per
delivered frame, and 500 clients connecting at once meant 500 snapshot
builds in the engine (issue 11, ADR 0013). The hub instead

- receives each delta once, keeps a mirror of the process image (the
  engine's live rows, :mod:`bms.engine.bus`) and asks the engine for a
  snapshot only when it starts, misses a delta, or the image was replaced;
- groups clients into views (wire form + subscription) and encodes each
  delta once per view; every client of the view gets the same prepared
  frame (:class:`~bms.realtime.outlet.Frame`);
- skips a client whose connection is backed up and, when it drains, sends
  it one catch-up delta with the latest state of what changed meanwhile: a
  slow client gets fewer, fuller frames and never holds up the others;
- serves snapshots from the mirror: a view's snapshot is encoded once and
  reused for a second, followed by the frames sent since, so a burst of
  connecting clients costs one encoding, not one engine request each.

Sequence rules for clients are unchanged: a delta's ``from`` is the ``seq``
the client holds; a snapshot may come at any time and replaces everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from bms import layer_bridge
from bms.alarms.spec import SUMMARY_ENTRY
from bms.engine import bus
from bms.engine.tasks import cancel_and_wait
from bms.outage import OutageLog
from bms.realtime import layer_health, revocation, wire
from bms.realtime.outlet import Frame, Outlet
from bms.realtime.sitescope import LiveScope, ScopedRows, site_entries

log = logging.getLogger(__name__)

#: how long the hub waits for the engine's snapshot before asking again (and telling waiting clients, once)
SNAPSHOT_RETRY = 3.0
#: a view's encoded snapshot is reused this long (with the frames sent since) before it is encoded anew
SNAPSHOT_REUSE = 1.0
#: at most this many frames are replayed after a reused snapshot; beyond that it is encoded anew
REPLAY_LIMIT = 64
#: deltas kept while the hub waits for a snapshot (older ones are dropped: the snapshot covers them)
BUFFER_LIMIT = 256
#: how often the entries of restricted clients' sites are worked out again (also whenever entries come or go), so
#: a device moved to another site leaves its old site's clients within this time
SCOPE_REFRESH = 30.0

ENGINE_WAITING = wire.encode(
    {
        "type": "error",
        "code": "engine_unavailable",
        "message": "waiting for the engine to answer; the snapshot follows as soon as it does (no need to ask again)",
    }
)


class LiveClient:
    """One websocket connection's place in the hub."""

    __slots__ = ("__weakref__", "form", "outlet", "scope", "seq", "sites", "told_waiting", "view", "waiting_since")

    def __init__(
        self, outlet: Outlet, form: str, scope: LiveScope | None = None, sites: frozenset[int] | None = None
    ) -> None:
        self.outlet = outlet
        self.form = form
        self.scope = scope  # None: every entry; else only its sites' (bms.realtime.sitescope)
        self.sites = sites  # the ids of those sites, to work the entries out again
        self.view: View | None = None
        self.seq: int | None = None  # the seq the client holds; None until it has a snapshot
        self.waiting_since = 0.0  # loop time it started waiting for a snapshot the hub could not send yet
        self.told_waiting = False


@dataclass(frozen=True, slots=True)
class Family:
    """A subscription to a kind of entry instead of names: it follows entries of its kind as they come and go.

    ``points``: the polled points (names without ``:``); ``alarms``: every ``alarm:`` entry and the summary;
    ``alarm-summary``: ``alarms:summary`` only (the header count of every page)."""

    name: str
    prefixes: tuple[str, ...] = ()

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name.startswith(self.prefixes) if self.prefixes else ":" not in name


FAMILIES = {
    family.name: family
    for family in (Family("points"), Family("alarms", ("alarm:", "alarms:")), Family("alarm-summary", ("alarms:",)))
}
#: what a client receives: everything (None), the named entries, or a family
Selection = frozenset[str] | Family | None


class View:
    """Clients with the same wire form, subscription and site scope: they get the same frames."""

    def __init__(self, form: str, selection: Selection, scope: LiveScope | None = None) -> None:
        self.form = form
        self.selection = selection
        self.scope = scope
        self.clients: set[LiveClient] = set()
        self.names: list[str] = []
        self.position: dict[str, int] = {}
        self.sent_seq = 0  # every point of the view is as of this seq; the next delta starts from it
        self.snapshot: Frame | None = None
        self.snapshot_at = 0.0
        self.replay: list[Frame] = []

    def reindex(self, order: list[str], seq: int) -> None:
        """The hub's points changed (a new snapshot, points added or removed): start the view again at ``seq``."""
        selection, scope = self.selection, self.scope
        if scope is not None:
            order = [name for name in order if name in scope]
        self.names = order if selection is None else [name for name in order if name in selection]
        self.position = {name: index for index, name in enumerate(self.names)}
        self.sent_seq = seq
        self.snapshot = None
        self.replay = []


class LiveHub:
    """This process's live stream, fanned out (see the module docstring). Runs on one event loop."""

    def __init__(self, layer: Any, engine_channel: str) -> None:
        self.layer = layer
        self.engine_channel = engine_channel
        self.rows: dict[str, list[Any]] = {}
        self.order: list[str] = []  # point names, sorted: positions stay put across snapshots of the same points
        self.seq: int | None = None  # None: no image yet (or it is being replaced); clients wait
        self.views: dict[tuple[str, Selection, LiveScope | None], View] = {}
        #: one scope per set of visible names, shared by the restricted clients that see the same
        self.scopes: dict[frozenset[str], LiveScope] = {}
        self._scoping: asyncio.Future | None = None
        self.clients: set[LiveClient] = set()
        self.channel: str | None = None
        self._awaiting_snapshot = False
        self._asked_at = 0.0
        self._buffer: list[dict[str, Any]] = []
        self._task: asyncio.Task | None = None
        self.failures = OutageLog(
            "live hub: the channel layer failed", "live hub: the channel layer works again", logger=log
        )
        # counters for /metrics and the benches
        self.frames_encoded = 0
        self.frames_sent = 0
        self.catch_ups = 0
        self.snapshots_requested = 0

    # -- clients --------------------------------------------------------------------------------------------------

    def join(
        self,
        outlet: Outlet,
        form: str,
        selection: Selection = None,
        visible: frozenset[str] | None = None,
        sites: frozenset[int] | None = None,
    ) -> LiveClient:
        """A new connection: it gets a snapshot (of ``selection``) now, or as soon as the hub has one.

        ``visible``: the only entries a client restricted to the sites ``sites`` may get (None: every entry)."""
        self.start()
        watch = layer_health.watch()
        if watch is not None:
            watch.add(self)  # told once per outage, like the consumers; joining again re-registers
        client = LiveClient(outlet, form, None if visible is None else self._scope(visible), sites)
        client_ref = weakref.ref(client)
        outlet.on_resume = lambda: self._resume(client_ref)
        self.clients.add(client)
        self._enter(client, selection)
        return client

    def leave(self, client: LiveClient) -> None:
        self.clients.discard(client)
        self._exit_view(client)
        client.outlet.close()
        self._forget(client.scope)

    @property
    def ready(self) -> bool:
        return self.seq is not None

    def known(self, names: list[str], client: LiveClient | None = None) -> list[str]:
        """The names in ``names`` that are not points of the image, or not of ``client``'s sites (empty: all known).

        A name of another site is answered like a name that does not exist."""
        unknown = set(names) - self.rows.keys()
        scope = client.scope if client is not None else None
        if scope is not None:
            unknown.update(name for name in names if name not in scope)
        return sorted(unknown)

    def _scope(self, visible: frozenset[str]) -> LiveScope:
        scope = self.scopes.get(visible)
        if scope is None:
            scope = self.scopes[visible] = LiveScope(visible)
            scope.recount(self.rows)
        return scope

    def _forget(self, scope: LiveScope | None) -> None:
        """Drop ``scope`` once no client holds it."""
        if scope is not None and not any(client.scope is scope for client in self.clients):
            if self.scopes.get(scope.names) is scope:
                del self.scopes[scope.names]

    async def refresh_scopes(self) -> None:
        """Work the entries of restricted clients' sites out again (one query per set of sites); a client whose
        entries changed (an entry added, a device moved to another site) starts again from a snapshot of the new."""
        by_sites: dict[frozenset[int], list[LiveClient]] = {}
        for client in self.clients:
            if client.scope is not None and client.sites is not None:
                by_sites.setdefault(client.sites, []).append(client)
        for sites, clients in by_sites.items():
            names = await site_entries(sites)
            for client in clients:
                old = client.scope
                if client not in self.clients or old is None or old.names == names or names is None:
                    continue
                selection = client.view.selection if client.view is not None else None
                self._exit_view(client)
                client.scope = self._scope(names)
                self._enter(client, selection)
                self._forget(old)

    def _want_scopes(self) -> None:
        """Refresh the scopes soon (entries came or went), once however many reshapes come meanwhile."""
        if self._scoping is None or self._scoping.done():
            self._scoping = asyncio.ensure_future(self.refresh_scopes())
            self._scoping.add_done_callback(_log_scope_failure)

    async def _refresh_scopes_periodically(self) -> None:
        while True:
            await asyncio.sleep(SCOPE_REFRESH)
            if self.scopes:
                self._want_scopes()

    def _rows(self, view: View) -> Mapping[str, list[Any]]:
        return self.rows if view.scope is None else ScopedRows(self.rows, view.scope)

    def subscribe(self, client: LiveClient, names: list[str] | Family | None) -> None:
        """Send the client only ``names`` (or a family) from now on (None: every entry), starting with a snapshot."""
        self._exit_view(client)
        self._enter(client, names if names is None or isinstance(names, Family) else frozenset(names))

    def resync(self, client: LiveClient) -> None:
        """The client asked for a fresh snapshot."""
        client.seq = None
        self._send_snapshot(client, current=True)

    def _enter(self, client: LiveClient, selection: Selection) -> None:
        key = (client.form, selection, client.scope)
        view = self.views.get(key)
        if view is None:
            view = self.views[key] = View(client.form, selection, client.scope)
            view.reindex(self.order, self.seq or 0)
        view.clients.add(client)
        client.view = view
        client.seq = None
        self._send_snapshot(client)

    def _exit_view(self, client: LiveClient) -> None:
        view = client.view
        if view is None:
            return
        view.clients.discard(client)
        client.view = None
        if not view.clients:
            self.views.pop((view.form, view.selection, view.scope), None)  # its scope goes with its last client

    def _send_snapshot(self, client: LiveClient, current: bool = False) -> None:
        """The view's snapshot; reused with the frames sent since, unless ``current`` (no replay) is asked."""
        view = client.view
        now = asyncio.get_running_loop().time()
        if view is None or self.seq is None:
            client.waiting_since = now  # sent when the image arrives
            if self._awaiting_snapshot and now - self._asked_at >= SNAPSHOT_RETRY:
                self._ask_again()  # a long wait already: this client need not wait for the next retry
            return
        if (
            view.snapshot is None
            or now - view.snapshot_at > SNAPSHOT_REUSE
            or len(view.replay) >= REPLAY_LIMIT
            or (current and view.replay)
        ):
            # Rows of the view's points are all as of view.sent_seq: the snapshot is stamped with it, so the next
            # shared delta (from = view.sent_seq) follows it for every client of the view.
            view.snapshot = Frame(wire.snapshot_text(view.form, view.sent_seq, view.names, self._rows(view)))
            view.snapshot_at = now
            view.replay = []
            self.frames_encoded += 1
        frames = [view.snapshot, *view.replay]
        for frame in frames:
            if not client.outlet.send(frame):
                return
        self.frames_sent += len(frames)
        client.seq = view.sent_seq
        client.told_waiting = False

    def _resume(self, client_ref: weakref.ref[LiveClient]) -> None:
        client = client_ref()
        if client is not None and client in self.clients and client.seq is not None:
            self._catch_up(client)

    def _catch_up(self, client: LiveClient) -> None:
        """One delta with the latest state of every point of the client's view that changed since its seq."""
        view = client.view
        if view is None or client.seq is None or client.seq == view.sent_seq or not client.outlet.writable:
            return
        since = client.seq
        rows = self._rows(view)
        changes = [
            (position, name, rows[name]) for position, name in enumerate(view.names) if rows[name][bus.ROW_SEQ] > since
        ]
        if not changes:  # nothing of the view changed: the client holds view.sent_seq's state already
            client.seq = view.sent_seq
            return
        frame = Frame(wire.delta_text(view.form, since, view.sent_seq, changes))
        self.frames_encoded += 1
        self.catch_ups += 1
        if client.outlet.send(frame):
            self.frames_sent += 1
            client.seq = view.sent_seq

    def broadcast_text(self, text: str) -> None:
        """Send the same message (role, status) to every client."""
        frame = Frame(text)
        for client in list(self.clients):
            if client.outlet.send(frame):
                self.frames_sent += 1

    # -- the engine's stream ------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        retry = asyncio.ensure_future(self._retry_snapshots())
        rescope = asyncio.ensure_future(self._refresh_scopes_periodically())
        try:
            while True:
                try:
                    await self._listen()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Redis gone: connected clients are told and closed by layer_health; new ones wait here.
                    self.failures.failed(exc)
                    self.seq = None
                    self._awaiting_snapshot = False
                    await asyncio.sleep(1.0)
        finally:
            retry.cancel()
            rescope.cancel()
            if self._scoping is not None:
                self._scoping.cancel()
            if layer_bridge.serves(asyncio.get_running_loop()):
                layer_bridge.sink(bus.LIVE_GROUP, None)
            if self.channel is not None:
                with contextlib.suppress(Exception):
                    await self.layer.group_discard(bus.LIVE_GROUP, self.channel)
                with contextlib.suppress(Exception):
                    await self.layer.group_discard(revocation.GROUP, self.channel)

    async def _listen(self) -> None:
        self.channel = await self.layer.new_channel()
        # logouts and password changes in any web process close this process's websockets of that login
        await self.layer.group_add(revocation.GROUP, self.channel)
        if layer_bridge.serves(asyncio.get_running_loop()):
            # the engine runs in this process (runbms): its live messages are handed over directly
            layer_bridge.sink(bus.LIVE_GROUP, self.handle)
        else:
            await self.layer.group_add(bus.LIVE_GROUP, self.channel)
        await self._ask_for_snapshot()
        self.failures.worked()
        while True:
            self.handle(await self.layer.receive(self.channel))

    async def _ask_for_snapshot(self) -> None:
        self._awaiting_snapshot = True
        self._asked_at = asyncio.get_running_loop().time()
        self.snapshots_requested += 1
        await self.layer.send(self.engine_channel, {"type": bus.SNAPSHOT_REQUEST, "reply_to": self.channel})

    def _want_snapshot(self) -> None:
        if not self._awaiting_snapshot:
            self._ask_again()

    def _ask_again(self) -> None:
        if self.channel is None:
            return  # asked as soon as the hub is subscribed
        self._awaiting_snapshot = True
        self._asked_at = asyncio.get_running_loop().time()  # also if the send fails: retried, not repeated at once
        task = asyncio.ensure_future(self._ask_for_snapshot())
        task.add_done_callback(_log_failure)

    async def _retry_snapshots(self) -> None:
        """One request per process every few seconds while the engine does not answer; clients are told once."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SNAPSHOT_RETRY / 3)
            if not self._awaiting_snapshot:
                continue
            now = loop.time()
            waiting = [
                client
                for client in self.clients
                if client.seq is None and not client.told_waiting and now - client.waiting_since >= SNAPSHOT_RETRY
            ]
            if waiting:
                frame = Frame(ENGINE_WAITING)
                for client in waiting:
                    client.told_waiting = True
                    client.outlet.send(frame)
            if now - self._asked_at >= SNAPSHOT_RETRY:
                self._ask_again()

    async def channel_layer_down(self, reason: str) -> None:
        """Redis is away: deltas are being lost, so the mirror is no longer the image. Start again from a snapshot
        (asked every few seconds until the engine answers), whatever the pub/sub connection does meanwhile."""
        log.info("live hub: channel layer down (%s); waiting for a new snapshot", reason)
        self.seq = None
        self._awaiting_snapshot = True
        self._asked_at = float("-inf")

    def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == bus.LIVE_DELTA:
            self._on_delta(message)
        elif kind == bus.LIVE_SNAPSHOT:
            if self._awaiting_snapshot or self.seq is None:
                self._load(message["seq"], message["points"])
        elif kind == bus.LIVE_RESET:
            self._want_snapshot()
        elif kind == revocation.REVOKE:
            revocation.close_local(message)
        elif kind == bus.LIVE_ROLE:
            self.broadcast_text(wire.encode({"type": "role", **{k: v for k, v in message.items() if k != "type"}}))
            self._want_snapshot()
        else:
            log.warning("live hub: ignoring message of type %r", kind)

    def _load(self, seq: int, rows: dict[str, list[Any]]) -> None:
        """A full image from the engine: every client starts from its snapshot."""
        self._awaiting_snapshot = False
        self.rows = rows
        self.seq = seq
        self._reindex()
        buffered, self._buffer = self._buffer, []
        for delta in buffered:
            self._on_delta(delta)

    def _reindex(self) -> None:
        self.order = sorted(self.rows)
        for scope in self.scopes.values():
            scope.recount(self.rows)
        if self.scopes:
            self._want_scopes()  # entries came or went: restricted clients' may be among them
        for view in self.views.values():
            view.reindex(self.order, self.seq)
        for client in list(self.clients):
            client.seq = None
            self._send_snapshot(client)

    def _on_delta(self, delta: dict[str, Any]) -> None:
        if self.seq is None or self._awaiting_snapshot:
            self._buffer.append(delta)
            del self._buffer[:-BUFFER_LIMIT]
            return
        first, seq = delta["from"], delta["seq"]
        if seq <= self.seq:
            return  # covered by the snapshot
        if first > self.seq:
            log.info("live stream gap (%s..%s after %s); fetching a snapshot", first, seq, self.seq)
            self._buffer = [delta]
            self._want_snapshot()
            return
        rows = self.rows
        points: dict[str, list[Any] | None] = delta["points"]
        reshaped = False
        for name, row in points.items():
            if row is None:
                reshaped |= rows.pop(name, None) is not None
            else:
                reshaped |= name not in rows
                rows[name] = row
        self.seq = seq
        if reshaped:
            self._reindex()  # points added or removed: new names, new positions, new snapshots
            return
        # restricted clients' own summaries, from their alarms that changed (nothing to do without them)
        summaries = {scope for scope in self.scopes.values() if scope.changed(points, rows, seq)} if self.scopes else ()
        for view in list(self.views.values()):
            self._fan_out(view, seq, points, summaries)

    def _fan_out(
        self, view: View, seq: int, points: dict[str, list[Any] | None], summaries: Collection[LiveScope] = ()
    ) -> None:
        position = view.position
        scope = view.scope
        if scope is not None:
            # the node's summary is never a restricted client's; its own goes out when its alarms changed it
            changes = [
                (position[name], name, row)
                for name, row in points.items()
                if name in position and name != SUMMARY_ENTRY
            ]
            if scope in summaries and SUMMARY_ENTRY in position:
                changes.append((position[SUMMARY_ENTRY], SUMMARY_ENTRY, scope.summary_row))
        elif view.selection is None:
            changes = [(position[name], name, row) for name, row in points.items()]
        else:
            changes = [(position[name], name, row) for name, row in points.items() if name in position]
        if not changes:
            return
        first = view.sent_seq
        frame = Frame(wire.delta_text(view.form, first, seq, changes))
        self.frames_encoded += 1
        view.sent_seq = seq
        if view.snapshot is not None:
            view.replay.append(frame)
        sent = 0
        for client in view.clients:
            if client.seq == first and client.outlet.writable:
                if client.outlet.send(frame):
                    client.seq = seq
                    sent += 1
            elif client.seq is not None and client.outlet.writable:
                self._catch_up(client)  # behind without being paused (e.g. joined mid-frame): catch up now
            # paused clients are caught up when their connection drains (Outlet.on_resume)
        self.frames_sent += sent

    def stats(self) -> dict[str, int]:
        return {
            "clients": len(self.clients),
            "direct_clients": sum(1 for client in self.clients if client.outlet.direct),
            "views": len(self.views),
            "points": len(self.rows),
            "frames_encoded": self.frames_encoded,
            "frames_sent": self.frames_sent,
            "catch_ups": self.catch_ups,
            "snapshots_requested": self.snapshots_requested,
        }


def _log_scope_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        # the clients keep the entries they had (a reshape's new entries stay hidden from them): fail closed
        log.warning("live hub: could not work out restricted clients' entries again: %s", task.exception())


def _log_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("live hub: snapshot request failed: %s", task.exception())


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LiveHub] = weakref.WeakKeyDictionary()


def hub() -> LiveHub:
    """The hub of the running event loop (one per web process; tests run one loop each)."""
    from channels.layers import get_channel_layer

    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = LiveHub(get_channel_layer(), bus.engine_channel())
    return found


def live_stats() -> dict[str, int]:
    """The counters of this process's hubs, summed (for ``/healthz``; normally there is one hub)."""
    total = dict.fromkeys(LiveHub(None, "").stats(), 0)
    for each in list(_hubs.values()):
        for key, value in each.stats().items():
            total[key] = total.get(key, 0) + value
    return total


async def stop_hub() -> None:
    """Stop the running loop's hub (server shutdown)."""
    found = _hubs.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.stop()
