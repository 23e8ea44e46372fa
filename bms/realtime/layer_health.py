"""Whether this process's channel layer can reach its Redis, for ``/healthz`` and the live websocket.

The Redis pub/sub layer gives no sign of an outage to the code above it:
subscribers simply stop hearing anything, sends raise, and its own receive
task logs a traceback every second. This module makes the outage visible:

- :class:`LayerProbe` pings the layer's Redis host(s) with a short timeout
  (``CHECK_TIMEOUT``) and caches the answer for ``CACHE_SECONDS``, so
  ``/healthz`` may ask on every call. In the embedded shape (in-memory
  layer) there is nothing to reach and the layer is always ``ok``.
- :class:`LayerWatch` probes once a second on the websocket loop while live
  consumers are connected and tells each of them when the layer goes down;
  they send a ``status`` message and close with :data:`CLOSE_LAYER_DOWN`.
- :class:`LayerOutageLogFilter` keeps channels_redis' per-second receive
  tracebacks to one line per outage (installed by ``RealtimeConfig.ready``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from bms.outage import OutageLog

log = logging.getLogger(__name__)

#: websocket close code for "live updates interrupted: the channel layer is down; reconnect later"
CLOSE_LAYER_DOWN = 4503
CLOSE_LAYER_DOWN_REASON = "live updates interrupted: channel layer unavailable; reconnect"
CHECK_TIMEOUT = 0.5
CACHE_SECONDS = 1.0
WATCH_INTERVAL = 1.0
OK = "ok"
DOWN = "down"

try:
    from redis.exceptions import ConnectionError as _RedisConnectionError
    from redis.exceptions import TimeoutError as _RedisTimeoutError

    #: what a channel-layer call raises when its backend cannot be reached (OSError covers refused and timed out)
    LAYER_ERRORS: tuple[type[BaseException], ...] = (OSError, _RedisConnectionError, _RedisTimeoutError)
except ImportError:  # the embedded shape does not need redis installed
    LAYER_ERRORS = (OSError,)


class LayerProbe:
    """Cached, bounded reachability check of the channel layer's Redis host(s).

    One probe runs at a time; callers that arrive while it runs get the
    previous answer instead of waiting, so a hanging host costs at most one
    ``timeout`` per ``max_age`` in one thread.
    """

    def __init__(
        self,
        hosts: list[dict[str, Any]],
        timeout: float = CHECK_TIMEOUT,
        max_age: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.max_age = max_age
        self.clock = clock
        self._clients = [client for client in (_client(host, timeout) for host in hosts) if client is not None]
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self.outage = OutageLog(
            "channel layer down (live updates interrupted)", "channel layer reachable again", logger=log
        )

    @property
    def _up(self) -> bool:
        return not self.outage.down

    @property
    def reason(self) -> str:
        """Why the layer is down ("" while it is up)."""
        return self.outage.reason

    def fresh(self) -> bool | None:
        """The cached answer while it is younger than ``max_age``, else ``None``."""
        if self._checked_at is not None and self.clock() - self._checked_at < self.max_age:
            return self._up
        return None

    def is_up(self) -> bool:
        """Whether every host answers PING (blocks for at most about ``timeout`` per host)."""
        cached = self.fresh()
        if cached is not None:
            return cached
        # The first caller ever must wait for an answer; later ones take the previous one while a probe runs.
        if not self._lock.acquire(blocking=self._checked_at is None):
            return self._up
        try:
            cached = self.fresh()
            if cached is None:
                self._record(self._ping_all())
            return self._up
        finally:
            self._lock.release()

    def _ping_all(self) -> str:
        for client in self._clients:
            try:
                client.ping()
            except Exception as exc:  # any failure to get PONG means live traffic cannot flow
                return f"{type(exc).__name__}: {exc}"
        return ""

    def _record(self, failure: str) -> None:
        self._checked_at = self.clock()
        if failure:
            self.outage.failed(failure)
        else:
            self.outage.worked()


def _client(host: dict[str, Any], timeout: float) -> Any:
    """A synchronous Redis client for one channels_redis ``hosts`` entry (sentinel setups are not probed)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # One retry reconnects a pooled connection that Redis dropped while it restarted; no backoff keeps it bounded.
    options = {"socket_connect_timeout": timeout, "socket_timeout": timeout, "retry": Retry(NoBackoff(), 1)}
    host = dict(host)
    if "master_name" in host:
        return None
    if "address" in host:
        return redis.Redis.from_url(host.pop("address"), **{**host, **options})
    return redis.Redis(**{**host, **options})


_probe: LayerProbe | None = None
_probe_built = False
_probe_lock = threading.Lock()


def probe() -> LayerProbe | None:
    """This process's probe, or ``None`` when the layer has nothing to reach (in-memory)."""
    global _probe, _probe_built
    if not _probe_built:
        with _probe_lock:
            if not _probe_built:
                _probe = _build_probe()
                _probe_built = True
    return _probe


def _build_probe() -> LayerProbe | None:
    from django.conf import settings

    config = getattr(settings, "CHANNEL_LAYERS", {}).get("default", {})
    backend = str(config.get("BACKEND", ""))
    if not backend.startswith(("channels_redis.", "bms.realtime.redis_layer.")):
        return None
    from channels_redis.utils import decode_hosts

    return LayerProbe(decode_hosts(config.get("CONFIG", {}).get("hosts")))


def state() -> str:
    """``"ok"`` or ``"down"``; cheap (cached) and bounded by ``CHECK_TIMEOUT``."""
    checker = probe()
    return OK if checker is None or checker.is_up() else DOWN


async def is_up() -> bool:
    """:func:`state` for the event loop: the cached answer, or a probe in a worker thread."""
    checker = probe()
    if checker is None:
        return True
    cached = checker.fresh()
    if cached is not None:
        return cached
    return await asyncio.to_thread(checker.is_up)


def add_to_health(body: dict[str, Any]) -> dict[str, Any]:
    """Add ``channel_layer`` to a ``/healthz`` body; a down layer makes an ``ok`` status ``degraded``."""
    layer = state()
    body["channel_layer"] = layer
    if layer == DOWN and body.get("status") == "ok":
        body["status"] = "degraded"
    return body


# --- telling connected consumers ---------------------------------------------------------------------------------


class LayerListener(Protocol):
    """A live consumer that wants to hear when the channel layer goes down."""

    async def channel_layer_down(self, reason: str) -> None: ...


class LayerWatch:
    """Probes the layer every ``interval`` while listeners are registered; tells them all once it is down.

    One task per process serves every connected consumer, so the cost does
    not grow with the number of clients. Listeners are dropped once told: a
    consumer closes its socket, and its client reconnects when it can.
    """

    def __init__(self, checker: LayerProbe, interval: float = WATCH_INTERVAL) -> None:
        self.checker = checker
        self.interval = interval
        self.listeners: set[LayerListener] = set()
        self._task: asyncio.Task | None = None

    def add(self, listener: LayerListener) -> None:
        self.listeners.add(listener)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="channel-layer-watch")

    def discard(self, listener: LayerListener) -> None:
        self.listeners.discard(listener)

    async def _run(self) -> None:
        while self.listeners:
            await asyncio.sleep(self.interval)
            try:
                up = await asyncio.to_thread(self.checker.is_up)
            except Exception:
                log.exception("checking the channel layer failed")
                continue
            if up or not self.listeners:
                continue
            told, self.listeners = self.listeners, set()
            results = await asyncio.gather(
                *(listener.channel_layer_down(self.checker.reason) for listener in told), return_exceptions=True
            )
            failed = [result for result in results if isinstance(result, BaseException)]
            if failed:
                log.warning(
                    "%d of %d live client(s) could not be told of the outage: %s", len(failed), len(told), failed[0]
                )


_watches: dict[asyncio.AbstractEventLoop, LayerWatch] = {}


def watch() -> LayerWatch | None:
    """The watch for the running loop, or ``None`` when the layer has nothing to reach."""
    checker = probe()
    if checker is None:
        return None
    loop = asyncio.get_running_loop()
    found = _watches.get(loop)
    if found is None:
        for stale in [other for other in _watches if other.is_closed()]:
            del _watches[stale]
        found = _watches[loop] = LayerWatch(checker)
    return found


# --- channels_redis' own logging -------------------------------------------------------------------------------------


class LayerOutageLogFilter(logging.Filter):
    """Turns channels_redis' traceback-per-second during a Redis outage into one line, then a count.

    Its pub/sub receive task logs every failed reconnect with a traceback
    (once a second), and every consumer that leaves during the outage adds
    one more. The first record of an outage passes without its traceback;
    the rest are counted, with a reminder every ``remind_every``. Records
    ``quiet_after`` seconds apart start a new outage.
    """

    def __init__(
        self, quiet_after: float = 10.0, remind_every: int = 300, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.quiet_after = quiet_after
        self.remind_every = remind_every
        self.clock = clock
        self.suppressed = 0
        self._last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, LAYER_ERRORS):
            return True
        now = self.clock()
        new_outage = self._last is None or now - self._last > self.quiet_after
        self._last = now
        if new_outage:
            self.suppressed = 0
            summary = f"{record.getMessage()}: {type(error).__name__}: {error} (Redis unreachable; repeats are counted)"
        else:
            self.suppressed += 1
            if self.suppressed % self.remind_every:
                return False
            summary = f"Redis still unreachable: {self.suppressed} more channel layer error(s) since the first"
        record.msg, record.args = summary, ()
        record.exc_info = record.exc_text = None
        return True


_log_filter = LayerOutageLogFilter()


def install_log_filter() -> None:
    """Attach the outage filter to channels_redis' loggers (idempotent)."""
    for name in ("channels_redis.pubsub", "channels_redis.core"):
        logger = logging.getLogger(name)
        if _log_filter not in logger.filters:
            logger.addFilter(_log_filter)
