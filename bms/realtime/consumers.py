"""The live websocket: a snapshot with its ``seq``, then coalesced deltas, healed by new snapshots.

Client -> server messages (JSON objects with a ``type``):
  ``{"type": "subscribe", "points": ["zone1_temp", ...]}``  only these points (``null`` = all)
  ``{"type": "resync"}``                                    send me a fresh snapshot
  ``{"type": "ping"}``                                      answered by ``pong``
Server -> client:
  ``{"type": "snapshot", "seq": S, "points": {name: state}}``
  ``{"type": "delta", "from": A, "seq": B, "points": {name: state | null}}``  (``from`` = the seq the client must have)
  ``{"type": "error", "code": ..., "message": ...}``  the socket stays open
  ``{"type": "status", "channel_layer": "down", "message": ...}``  live updates stopped; the close follows

Channel-layer outage (production: Redis stopped or unreachable). Live data
cannot flow, so the server says so instead of falling silent: a connected
client gets the ``status`` message above within about two seconds (one
process-wide probe a second, :mod:`bms.realtime.layer_health`) and the socket
is closed with code ``4503`` (``CLOSE_LAYER_DOWN``; Daphne 4.2 does not pass
the close reason on, so the status message carries it). A connection
attempted during the outage is accepted only to get the same message and
close, never an HTTP 500. Clients should reconnect after a few seconds;
once Redis answers again a new connection starts with a snapshot as usual.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from bms.engine import bus
from bms.realtime import layer_health
from bms.realtime.layer_health import LAYER_ERRORS

log = logging.getLogger(__name__)
SNAPSHOT_TIMEOUT = 3.0
MAX_MESSAGE_BYTES = 65536


def _authenticated(scope: dict[str, Any]) -> bool:
    user = scope.get("user")
    return user is not None and user.is_authenticated


class LiveConsumer(AsyncWebsocketConsumer):
    """One visualization client; requires a logged-in user (origin is checked in front of it)."""

    accepted = False
    layer_down = False  # set once the client has been told; nothing more is sent

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Channels subscribes the consumer's own channel before the handshake
        # is even read; with Redis down that raised, and Daphne answered 500.
        if scope["type"] == "websocket" and not await layer_health.is_up():
            await self._refuse_unavailable(scope, receive, send)
            return
        try:
            await super().__call__(scope, receive, send)
        except LAYER_ERRORS:
            if hasattr(self, "channel_name"):
                raise  # not the subscription at the start; connect/disconnect handle their own
            await self._refuse_unavailable(scope, receive, send)

    async def _refuse_unavailable(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answer the handshake with the outage status and close code (anonymous users get 4401 as always)."""
        if (await receive()).get("type") != "websocket.connect":
            return
        if not _authenticated(scope):
            await send({"type": "websocket.close", "code": 4401})
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(_status_down(_probe_reason()))})
        await send(
            {
                "type": "websocket.close",
                "code": layer_health.CLOSE_LAYER_DOWN,
                "reason": layer_health.CLOSE_LAYER_DOWN_REASON,
            }
        )

    async def connect(self) -> None:
        if not _authenticated(self.scope):
            await self.close(code=4401)
            return
        self.engine_seq: int | None = None  # last engine seq folded in; None while awaiting a snapshot
        self.client_seq = 0  # the seq the client holds
        self.known: set[str] = set()
        self.selected: set[str] | None = None
        self.buffered: list[dict[str, Any]] = []
        self.snapshot_timer: asyncio.Task | None = None
        try:
            await self.channel_layer.group_add(bus.LIVE_GROUP, self.channel_name)
        except LAYER_ERRORS as exc:
            await self.channel_layer_down(f"{type(exc).__name__}: {exc}")
            return
        await self.accept()
        self.accepted = True
        watch = layer_health.watch()
        if watch is not None:
            watch.add(self)
        await self.request_snapshot()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "snapshot_timer", None):
            self.snapshot_timer.cancel()
        watch = layer_health.watch()
        if watch is not None:
            watch.discard(self)
        try:
            await self.channel_layer.group_discard(bus.LIVE_GROUP, self.channel_name)
        except LAYER_ERRORS:
            pass  # the layer is down: its subscription is gone with the connection

    async def channel_layer_down(self, reason: str) -> None:
        """The channel layer cannot carry live data: tell the client and close, so it reconnects later."""
        if self.layer_down:
            return
        self.layer_down = True
        if getattr(self, "snapshot_timer", None):
            self.snapshot_timer.cancel()
        if not self.accepted:
            await self.accept()
            self.accepted = True
        await self.send(text_data=json.dumps(_status_down(reason)))
        await self.close(code=layer_health.CLOSE_LAYER_DOWN, reason=layer_health.CLOSE_LAYER_DOWN_REASON)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels runs close_old_connections on Django's one shared sync
        # thread before every handler. Engine messages never touch the
        # database, and that hop cost ~0.5-0.8 ms per delta per client
        # (bench/live_latency.py), so they go straight to their handler.
        kind = message.get("type")
        if kind == bus.LIVE_DELTA:
            await self.live_delta(message)
        elif kind == bus.LIVE_SNAPSHOT:
            await self.live_snapshot(message)
        elif kind == bus.LIVE_ROLE:
            await self.live_role(message)
        elif kind == bus.LIVE_RESET:
            await self.request_snapshot()
        else:
            await super().dispatch(message)

    # --- engine side ---------------------------------------------------------------

    async def request_snapshot(self) -> None:
        self.engine_seq = None
        await self._ask_engine_for_snapshot()
        if self.layer_down:
            return
        if self.snapshot_timer:
            self.snapshot_timer.cancel()
        self.snapshot_timer = asyncio.ensure_future(self._snapshot_watchdog())

    async def _snapshot_watchdog(self) -> None:
        while self.engine_seq is None and not self.layer_down:
            await asyncio.sleep(SNAPSHOT_TIMEOUT)
            if self.engine_seq is None and not self.layer_down:
                await self.send_error("engine_unavailable", "the engine is not answering; retrying")
                await self._ask_engine_for_snapshot()

    async def _ask_engine_for_snapshot(self) -> None:
        request = {"type": bus.SNAPSHOT_REQUEST, "reply_to": self.channel_name}
        try:
            await self.channel_layer.send(bus.engine_channel(), request)
        except LAYER_ERRORS as exc:
            await self.channel_layer_down(f"{type(exc).__name__}: {exc}")

    async def live_snapshot(self, event: dict[str, Any]) -> None:
        if self.engine_seq is not None:
            return  # an answer to a request we no longer wait for
        self.engine_seq = event["seq"]
        self.known = set(event["points"])
        if self.selected is not None:
            self.selected &= self.known
        await self.send_json({"type": "snapshot", "seq": event["seq"], "points": self._select(event["points"])})
        self.client_seq = event["seq"]
        buffered, self.buffered = self.buffered, []
        for delta in buffered:
            await self.live_delta(delta)

    async def live_delta(self, event: dict[str, Any]) -> None:
        if self.engine_seq is None:
            self.buffered.append(event)
            return
        if event["seq"] <= self.engine_seq:
            return  # already covered by the snapshot
        if event["from"] > self.engine_seq:
            log.info(
                "live stream gap (%s..%s after %s); fetching a snapshot", event["from"], event["seq"], self.engine_seq
            )
            self.buffered = [event]
            await self.request_snapshot()
            return
        # Delta states are absolute, so a delta overlapping the snapshot is safe to apply.
        self.engine_seq = event["seq"]
        for name, state in event["points"].items():
            if state is None:
                self.known.discard(name)
            else:
                self.known.add(name)
        points = self._select(event["points"])
        if points:
            await self.send_json({"type": "delta", "from": self.client_seq, "seq": event["seq"], "points": points})
            self.client_seq = event["seq"]

    async def live_role(self, event: dict[str, Any]) -> None:
        """This node's role changed: tell the client (it follows the active node) and start from a snapshot."""
        await self.send_json({"type": "role", **{key: value for key, value in event.items() if key != "type"}})
        await self.request_snapshot()

    def _select(self, points: dict[str, Any]) -> dict[str, Any]:
        if self.selected is None:
            return points
        return {name: state for name, state in points.items() if name in self.selected}

    # --- client side ---------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send_error("malformed", "send JSON text frames, not binary")
            return
        if len(text_data) > MAX_MESSAGE_BYTES:
            await self.send_error("malformed", f"message larger than {MAX_MESSAGE_BYTES} bytes")
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            await self.send_error("malformed", "message is not valid JSON")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.send_error("malformed", 'message must be a JSON object with a "type"')
            return
        kind = message["type"]
        if kind == "resync":
            await self.request_snapshot()
        elif kind == "subscribe":
            await self.subscribe(message.get("points"))
        elif kind == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_error("unknown_type", f"unknown message type {kind!r}; use subscribe, resync or ping")

    async def subscribe(self, names: Any) -> None:
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
            await self.send_error("malformed", '"points" must be a list of point names, or null for all points')
            return
        if names is not None:
            if self.engine_seq is None and not self.known:
                await self.send_error("not_ready", "wait for the first snapshot before subscribing")
                return
            unknown = sorted(set(names) - self.known)
            if unknown:
                await self.send_error("unknown_point", f"unknown point(s): {', '.join(unknown)}", points=unknown)
                return
        self.selected = None if names is None else set(names)
        await self.request_snapshot()

    async def send_json(self, content: dict[str, Any]) -> None:
        if self.layer_down:
            return  # closed with the outage status; the client will reconnect
        await self.send(text_data=json.dumps(content, separators=(",", ":")))

    async def send_error(self, code: str, message: str, **extra: Any) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, **extra})


def _status_down(reason: str) -> dict[str, Any]:
    message = "live updates interrupted: the channel layer is unavailable; reconnect in a few seconds"
    return {"type": "status", "channel_layer": layer_health.DOWN, "message": message, "reason": reason}


def _probe_reason() -> str:
    checker = layer_health.probe()
    return checker.reason if checker is not None else ""
