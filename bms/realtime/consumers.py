"""The live websocket: a snapshot with its ``seq``, then coalesced deltas, healed by new snapshots.

The protocol, both wire forms (``keyed``, the default, and ``compact`` with
``?wire=compact``) and the rules for clients are in ``docs/live-protocol.md``;
the keyed form in brief:

Client -> server messages (JSON objects with a ``type``):
  ``{"type": "subscribe", "points": ["zone1_temp", ...]}``  only these points (``null`` = all)
  ``{"type": "subscribe", "family": "alarms"}``             a kind of entry, following it (also ``?family=``)
  ``{"type": "resync"}``                                    send me a fresh snapshot
  ``{"type": "ping"}``                                      answered by ``pong``
Server -> client:
  ``{"type": "snapshot", "seq": S, "points": {name: state}}``
  ``{"type": "delta", "from": A, "seq": B, "points": {name: state}}``  (``from`` = the seq the client must have)
  ``{"type": "error", "code": ..., "message": ...}``  the socket stays open
  ``{"type": "role", ...}``  this node's role changed (see static/bms/follow.js)
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

Limits per client (:class:`MessageLimit`): at most :data:`MESSAGE_RATE` messages a second (bursts of
:data:`MESSAGE_BURST`) and, of those, :data:`SNAPSHOT_RATE` that cost a snapshot (``resync``, ``subscribe``;
bursts of :data:`SNAPSHOT_BURST`). A message beyond them is dropped unread, the first of a run answered with
``{"type": "error", "code": "rate_limited"}``; a client that keeps on after :data:`PATIENCE` dropped messages
is closed with code ``4429``. One client looping ``resync`` used to cost the process seconds of CPU and every
other client's latency (issue 13); now it costs a counter per message until it is closed.

A user restricted to some sites (:mod:`bms.sites.scope`) gets the entries of those sites only: their points, their
alarms and a summary counting those alarms (:mod:`bms.realtime.sitescope`); subscribing to a name of another site
is answered ``unknown_point``, exactly as for a name that does not exist.

Logging out closes the session's sockets, a password change the user's: ``{"type": "error", "code":
"logged_out"}``, then code ``4401`` (logged out: the page stops) or ``4001`` (password changed: reconnect; a
session the change ended is refused with 4401 then): :mod:`bms.realtime.revocation`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from bms.accounts.sessions import session_digest
from bms.realtime import layer_health, revocation, wire
from bms.realtime.hub import FAMILIES, Family, LiveClient, hub
from bms.realtime.outlet import SCOPE_KEY, Frame, Outlet, outlet_for
from bms.realtime.sitescope import client_sites

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 65536
#: messages a client may send per second, and in one burst (settings BMS_LIVE_MESSAGE_RATE, BMS_LIVE_MESSAGE_BURST)
MESSAGE_RATE, MESSAGE_BURST = 20.0, 60.0
#: of those, messages that cost a snapshot (resync, subscribe), per second and in one burst
#: (BMS_LIVE_SNAPSHOT_RATE, BMS_LIVE_SNAPSHOT_BURST)
SNAPSHOT_RATE, SNAPSHOT_BURST = 1.0, 5.0
#: dropped messages a client is forgiven (one more every PATIENCE_REFILL seconds) before it is closed
PATIENCE, PATIENCE_REFILL = 30.0, 5.0
#: the close code for a client that keeps sending beyond its limits
CLOSE_TOO_MANY = 4429
SNAPSHOT_MESSAGES = frozenset({"resync", "subscribe"})


class Bucket:
    """A token bucket: ``take()`` succeeds at most ``rate`` times a second on average, ``burst`` at once."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class MessageLimit:
    """One client's limits (module docstring): says whether a message may be handled, warned of, or closed."""

    ALLOW, WARN, DROP, CLOSE = "allow", "warn", "drop", "close"

    def __init__(self) -> None:
        # A site with heavy visualization clients may allow more; the defaults hold a looping client off.
        self.messages = Bucket(
            getattr(settings, "BMS_LIVE_MESSAGE_RATE", MESSAGE_RATE),
            getattr(settings, "BMS_LIVE_MESSAGE_BURST", MESSAGE_BURST),
        )
        self.snapshots = Bucket(
            getattr(settings, "BMS_LIVE_SNAPSHOT_RATE", SNAPSHOT_RATE),
            getattr(settings, "BMS_LIVE_SNAPSHOT_BURST", SNAPSHOT_BURST),
        )
        self.patience = Bucket(1.0 / PATIENCE_REFILL, PATIENCE)
        self.warned = False

    def message(self) -> str:
        """Any message, before it is read."""
        return self.ALLOW if self.messages.take() else self._refused()

    def snapshot(self) -> str:
        """A message that costs a snapshot, once it is known to be one."""
        return self.ALLOW if self.snapshots.take() else self._refused()

    def _refused(self) -> str:
        if not self.patience.take():
            return self.CLOSE
        if self.warned:
            return self.DROP
        self.warned = True
        return self.WARN

    def handled(self) -> None:
        self.warned = False  # the next run of refused messages is warned of again


def _authenticated(scope: dict[str, Any]) -> bool:
    user = scope.get("user")
    return user is not None and user.is_authenticated


class LiveConsumer(AsyncWebsocketConsumer):
    """One visualization client; requires a logged-in user (origin is checked in front of it).

    The consumer only authenticates, reads the client's messages and hands
    the connection to this process's :class:`~bms.realtime.hub.LiveHub`,
    which sends it snapshots and deltas. It holds no channel-layer channel of
    its own (``channel_layer_alias`` names no layer): 500 clients are one
    subscription, not 500.
    """

    channel_layer_alias = "__live_clients_have_no_channel__"
    accepted = False
    layer_down = False  # set once the client has been told; nothing more is sent
    client: LiveClient | None = None
    outlet: Outlet | None = None
    limit: MessageLimit | None = None
    closing = False  # closed for its login or its flood: what it still sends is not read
    user_id: object = None
    session = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Checked before the handshake is read: with Redis down the hub cannot serve the client, and a
        # connection refused with a status and close code beats an HTTP 500.
        if scope["type"] == "websocket" and not await layer_health.is_up():
            await self._refuse_unavailable(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

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
        form = _wire_form(self.scope)
        family = _family(self.scope)
        if form is None or family is False:
            await self.close(code=4400)
            return
        # A user restricted to some sites gets only their entries: worked out once, here (one query), so the
        # hub filters in memory; None (every entry) for everyone else, who takes the path of before.
        sites, visible = await client_sites(self.scope["user"])
        await self.accept()
        self.accepted = True
        self.limit = MessageLimit()
        self.user_id = self.scope["user"].pk
        session = self.scope.get("session")
        self.session = session_digest(getattr(session, "session_key", None))
        revocation.register(self)
        watch = layer_health.watch()
        if watch is not None:
            watch.add(self)
        self.outlet = outlet_for(self.scope, self.base_send)
        self.client = hub().join(self.outlet, form, family, visible, sites)

    async def disconnect(self, code: int) -> None:
        revocation.unregister(self)
        watch = layer_health.watch()
        if watch is not None:
            watch.discard(self)
        if self.client is not None:
            hub().leave(self.client)
            self.client = None

    async def channel_layer_down(self, reason: str) -> None:
        """The channel layer cannot carry live data: tell the client and close, so it reconnects later."""
        if self.layer_down:
            return
        self.send_json(_status_down(reason))
        self.layer_down = True
        if self.client is not None:
            hub().leave(self.client)
            self.client = None
        await self.close(code=layer_health.CLOSE_LAYER_DOWN, reason=layer_health.CLOSE_LAYER_DOWN_REASON)

    async def logged_out(self, close_code: int) -> None:
        """The login of this socket ended (logout: 4401) or changed (password: 4001, reconnect): say so, close."""
        message = "you logged out" if close_code == revocation.CLOSE_LOGGED_OUT else "your password changed"
        await self._close_with("logged_out", f"{message}; live updates end here", close_code)

    async def _close_with(self, code: str, message: str, close_code: int) -> None:
        if self.closing:
            return
        self.closing = True
        revocation.unregister(self)
        if self.client is not None:
            hub().leave(self.client)  # no more frames from the hub
            self.client = None
        # straight to the connection, not through the outlet that leaving the hub just closed
        await self.send(text_data=wire.encode({"type": "error", "code": code, "message": message}))
        await self.close(code=close_code)

    # --- client side ---------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing or self.limit is None:
            return
        if not await self._allowed(self.limit.message()):
            return
        if text_data is None:
            self.send_error("malformed", "send JSON text frames, not binary")
            return
        if len(text_data) > MAX_MESSAGE_BYTES:
            self.send_error("malformed", f"message larger than {MAX_MESSAGE_BYTES} bytes")
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            self.send_error("malformed", "message is not valid JSON")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.send_error("malformed", 'message must be a JSON object with a "type"')
            return
        kind = message["type"]
        if self.client is None:
            return  # closing
        if kind in SNAPSHOT_MESSAGES and not await self._allowed(self.limit.snapshot()):
            return
        self.limit.handled()
        if kind == "resync":
            hub().resync(self.client)
        elif kind == "subscribe" and "family" in message:
            self.subscribe_family(message["family"])
        elif kind == "subscribe":
            self.subscribe(message.get("points"))
        elif kind == "ping":
            self.send_json({"type": "pong"})
        else:
            self.send_error("unknown_type", f"unknown message type {kind!r}; use subscribe, resync or ping")

    async def _allowed(self, verdict: str) -> bool:
        """Act on the limit's verdict: True if the message may be handled."""
        if verdict == MessageLimit.ALLOW:
            return True
        if verdict == MessageLimit.WARN:
            self.send_error(
                "rate_limited",
                f"too many messages: at most {MESSAGE_RATE:g} a second, {SNAPSHOT_RATE:g} of them resync or "
                "subscribe; messages beyond are dropped, and a client that keeps on is closed",
            )
        elif verdict == MessageLimit.CLOSE:
            await self._close_with("rate_limited", "closed: too many messages beyond the limits", CLOSE_TOO_MANY)
            self._stop_reading()
        return False

    def _stop_reading(self) -> None:
        """Under Daphne, stop reading the flooding connection: what it already sent would still be parsed, frame
        by frame, on the server's one loop, delaying every other client. The close frame queued before is still
        written (Twisted flushes, then closes)."""
        protocol = self.scope.get(SCOPE_KEY)
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            transport.loseConnection()

    def subscribe(self, names: Any) -> None:
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
            self.send_error("malformed", '"points" must be a list of point names, or null for all points')
            return
        live = hub()
        if names is not None:
            if not live.ready:
                self.send_error("not_ready", "wait for the first snapshot before subscribing")
                return
            unknown = live.known(names, self.client)
            if unknown:
                self.send_error("unknown_point", f"unknown point(s): {', '.join(unknown)}", points=unknown)
                return
        live.subscribe(self.client, names)

    def subscribe_family(self, name: Any) -> None:
        family = FAMILIES.get(name) if isinstance(name, str) else None
        if family is None:
            self.send_error("malformed", f'"family" must be one of {", ".join(FAMILIES)}')
            return
        hub().subscribe(self.client, family)

    def send_json(self, content: dict[str, Any]) -> None:
        """Queue a message for this client, in order with the hub's frames."""
        if self.layer_down or self.outlet is None:
            return  # closed with the outage status, or not accepted; the client will reconnect
        self.outlet.send(Frame(wire.encode(content)))

    def send_error(self, code: str, message: str, **extra: Any) -> None:
        self.send_json({"type": "error", "code": code, "message": message, **extra})


def _family(scope: dict[str, Any]) -> Family | Literal[False] | None:
    """The family asked for in the query string (``?family=alarms``); None: everything; False: an unknown one."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "family" not in query:
        return None
    return FAMILIES.get(query["family"][-1], False)


def _wire_form(scope: dict[str, Any]) -> str | None:
    """The wire form asked for in the query string (``?wire=compact``); None if it names no known form."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    asked = query.get("wire", [wire.KEYED])[-1]
    return asked if asked in wire.FORMS else None


def _status_down(reason: str) -> dict[str, Any]:
    message = "live updates interrupted: the channel layer is unavailable; reconnect in a few seconds"
    return {"type": "status", "channel_layer": layer_health.DOWN, "message": message, "reason": reason}


def _probe_reason() -> str:
    checker = layer_health.probe()
    return checker.reason if checker is not None else ""
