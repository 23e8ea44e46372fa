"""The engine: loads the configuration, runs one poller per device, publishes, executes commands.

It also answers snapshot requests on its engine channel and reloads
itself when the configuration revision moves, without a restart. Database
work runs on one dedicated thread so that the loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.conf import settings
from django.db import connections

from bms.alarms import store as alarm_store
from bms.alarms.engine import AlarmEngine
from bms.engine import bus, store
from bms.engine.commands import CommandExecutor
from bms.engine.config import EngineConfig
from bms.engine.dbhealth import UNAVAILABLE_ERRORS, DatabaseUnavailable, database_outage_log
from bms.engine.eventlog import EventOutbox
from bms.engine.function import EngineFunction
from bms.engine.image import ProcessImage
from bms.engine.loopwatch import LoopWatch
from bms.engine.outbox import Outbox
from bms.engine.poller import DevicePoller
from bms.engine.publisher import Publisher
from bms.engine.role import RoleGate, StandaloneRole
from bms.engine.sink import CommandSink
from bms.engine.tasks import cancel_and_wait
from bms.engine.turns import TURN_SLICE_SECONDS, TurnBudget
from bms.logic.engine import LogicEngine
from bms.outage import OutageLog
from bms.schedules.engine import ScheduleEngine
from bms.trends.sampler import TrendSampler

log = logging.getLogger(__name__)
T = TypeVar("T")


class Engine:
    """One node's real-time engine. ``await start()`` in a running loop, ``await stop()`` to end."""

    def __init__(
        self,
        channel_layer: Any,
        engine_channel: str | None = None,
        role: RoleGate | None = None,
        publish_min_interval: float = 0.02,
        publish_burst: int = 8,
        config_check_interval: float = 1.0,
        command_scan_interval: float = 0.5,
        turn_budget_seconds: float = TURN_SLICE_SECONDS,
    ) -> None:
        self.layer = channel_layer
        #: set when the web side shares this process (runbms without --web-workers): above this many points the
        #: engine warns at each configuration load (settings.BMS_ONE_PROCESS_POINTS); None: no limit
        self.one_process_points: int | None = None
        #: pollers get evenly spread phases (DevicePoller.phase, BMS_POLL_SPREAD); False: every device on one grid
        self.spread_polls = False
        #: the pollers' answers and the alarm, trend and logic slices share it: at most ``turn_budget_seconds`` of
        #: them per turn of the loop (bms/engine/turns.py); 0 or less: no limit (None)
        self.turns: TurnBudget | None = TurnBudget(turn_budget_seconds) if turn_budget_seconds > 0 else None
        self.channel = engine_channel or bus.engine_channel()
        self.role = role or StandaloneRole()
        self.image = ProcessImage()
        self.publisher = Publisher(self.image, channel_layer, publish_min_interval, publish_burst)
        self.config_check_interval = config_check_interval
        self.config: EngineConfig | None = None
        self.pollers: dict[str, DevicePoller] = {}
        self.commands = CommandExecutor(self.run_in_db, lambda: self.pollers, self.role, command_scan_interval)
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-db")
        # The node state row's writes (the pair service's liveness beat and status) on a thread and connection of
        # their own: behind commands, replication and history on the engine's database thread, a beat came later
        # than the heartbeat timeout under 50 API writers, and a web process of its own (runbms --no-engine) then
        # called this live, active node "unknown" and refused writes (bench/stress.py --layout processes).
        self._status_db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-status-db")
        self.db_health = database_outage_log("the engine keeps polling, events wait in memory", log)
        self.events = EventOutbox(self.run_in_db, settings.BMS_NODE_NAME, settings.BMS_EVENT_BUFFER)
        self.journal: Outbox[alarm_store.JournalItem] = Outbox(
            self.run_in_db,
            alarm_store.write_journal,
            "alarm journal",
            settings.BMS_ALARM_JOURNAL_BUFFER,
            batch=1000,
        )
        self.alarms = AlarmEngine(
            self.image, self.role, self.journal, self.publisher.notify, self.run_in_db, self.turns
        )
        self.trends = TrendSampler.for_node(self.image, self.role, self._log_event, self.turns)
        # Commands the engine's own functions make, recorded through the one command path.
        self.sink = CommandSink(self.run_in_db, self.role, self.commands.wake, self._log_event)
        # The functions that act on points (schedules, logic), in the order they see a change.
        function_classes: list[type[EngineFunction]] = [ScheduleEngine, LogicEngine]
        self.functions: list[EngineFunction] = [
            cls(self.image, self.role, self.sink, self.publisher.notify, self._log_event, self.turns)
            for cls in function_classes
        ]
        self.commands.function_outcome = self._function_outcome
        self._tasks: list[asyncio.Task] = []
        # The loop's own punctuality (lag p50/p99/max): what web load on this process costs the engine.
        self.loop_watch = LoopWatch()

    def _function_outcome(self, source: str, command_id: str, status: str) -> None:
        for function in self.functions:
            function.command_ended(source, command_id, status)

    async def run_in_db(self, func: Callable[..., T], *args: Any) -> T:
        """Run a blocking database call on the engine's database thread.

        Raises :class:`DatabaseUnavailable` (logged once per outage, by
        :attr:`db_health`) when the database cannot be reached, so periodic
        callers can wait quietly for it to return.
        """
        return await self._run_on(self._db, func, *args)

    async def run_in_status_db(self, func: Callable[..., T], *args: Any) -> T:
        """Like :meth:`run_in_db`, on the thread that writes only the node state row (never queued behind others)."""
        return await self._run_on(self._status_db, func, *args)

    async def _run_on(self, executor: ThreadPoolExecutor, func: Callable[..., T], *args: Any) -> T:
        try:
            result = await asyncio.get_running_loop().run_in_executor(executor, func, *args)
        except UNAVAILABLE_ERRORS as exc:
            if self.db_health.failed(exc):
                self.events.outage_began(self.db_health.reason, self.db_health.began)
            raise DatabaseUnavailable(self.db_health.reason) from exc
        if self.db_health.down:
            self.events.outage_ended(self.db_health.worked())
        return result

    async def start(self) -> None:
        self.loop_watch.start()
        await self.reload()
        if self.role.active:
            await self.take_control()
        self.publisher.start()
        self.events.start()
        self.journal.start()
        self.alarms.start()
        self.trends.start()
        self.sink.start()
        for function in self.functions:
            function.start()
        self.commands.start()
        self._tasks = [
            asyncio.create_task(self._watch_config(), name="config-watch"),
            asyncio.create_task(self._serve_requests(), name="engine-requests"),
        ]
        log.info(
            "engine started: %d device(s), %d point(s)",
            len(self.pollers),
            sum(len(d.points) for d in self.config.devices),
        )

    async def stop(self) -> None:
        await asyncio.gather(*(cancel_and_wait(task) for task in self._tasks))
        await self.loop_watch.stop()
        for function in self.functions:
            await function.stop()
        await self.sink.stop()
        await self.commands.stop()
        await self.alarms.stop()
        await self.trends.stop()
        await asyncio.gather(*(poller.stop() for poller in self.pollers.values()))
        self.pollers.clear()
        await self.publisher.flush()
        await self.publisher.stop()
        await self.events.stop()
        await self.journal.stop()
        await self.close_database()

    async def close_database(self) -> None:
        """Close the database threads' connections and end the threads: the last step of :meth:`stop`."""
        for executor in (self._db, self._status_db):
            await self._run_on(executor, connections.close_all)
            executor.shutdown(wait=True)

    async def take_control(self) -> None:
        """Become the node that talks to the field: settle interrupted commands, then start polling.

        Called at start-up for a single node, and by the redundancy layer on
        takeover or handover, after it persisted the new epoch.
        """
        settled = await self.run_in_db(store.mark_interrupted_commands, self.commands.node, self.role.epoch)
        if settled:
            log.warning(
                "%d command(s) in flight or waiting when control moved: settled (unknown or expired), not sent", settled
            )
        await self.reload()
        for poller in self.pollers.values():
            if not poller.running:
                poller.start()
        await self.alarms.take_control()
        self.trends.take_control()
        for function in self.functions:
            await function.take_control()
        self.commands.wake()

    async def release_control(self) -> None:
        """Stop all field I/O and alarm evaluation (the role gate already refuses writes); the image stays."""
        self.alarms.release_control()
        self.trends.release_control()
        for function in self.functions:
            function.release_control()
        await asyncio.gather(*(poller.stop() for poller in self.pollers.values()))

    async def reload(self) -> None:
        """Apply the current configuration: start, stop or restart only the devices that changed."""
        config = await self.run_in_db(store.load_config)
        old = {device.name: device for device in self.config.devices} if self.config else {}
        new = {device.name: device for device in config.devices}
        # What the replaced pollers knew of their device's link: a device that was unreachable (comm_lost
        # logged) must log comm_restored when its new poller first reads it, even if the change fixed it.
        online: dict[str, bool | None] = {}
        for name, poller in list(self.pollers.items()):
            if new.get(name) != old.get(name):
                await poller.stop()
                online[name] = poller.online
                del self.pollers[name]
        self.config = config
        if self.role.active:
            # A standby's image is the active node's, replicated; only the node
            # in control shapes it from its configuration.
            self.image.define(
                [point.name for device in config.devices for point in device.points]
                + AlarmEngine.entry_names(config.alarms)
                + [name for function in self.functions for name in function.entry_names(config)]
            )
        await self.alarms.configure(config.alarms)
        self.trends.configure(config.trends)
        for function in self.functions:
            await function.configure(config)
        for index, (name, device) in enumerate(new.items()):
            if name not in self.pollers:
                poller = DevicePoller(
                    device,
                    self.image,
                    self._points_changed,
                    self._log_event,
                    online.get(name),
                    index / len(new) if self.spread_polls else 0.0,
                    self.turns,
                )
                self.pollers[name] = poller
                if self.role.active:
                    poller.start()
        self.publisher.notify()
        # What a configuration builds (specs, pollers, image entries) lives until the next one: out of the
        # collector's way. A full collection of a 100,000-point node's heap took 0.4-0.9 s of the loop
        # (bench/alarms.py); frozen objects are still freed by reference counting when they go.
        gc.freeze()
        log.info("configuration revision %d loaded", config.revision)
        self._warn_if_too_large_for_one_process(config)

    def _warn_if_too_large_for_one_process(self, config: EngineConfig) -> None:
        limit = self.one_process_points
        points = sum(len(device.points) for device in config.devices)
        if limit and points > limit:
            log.warning(
                "%d points, and the web side runs in this process too: above %d (BMS_ONE_PROCESS_POINTS) the web's "
                "work takes the engine's time, polls fall behind and points go stale; run the engine in a process "
                "of its own (manage.py runbms --web-workers N)",
                points,
                limit,
            )

    def _points_changed(self) -> None:
        self.publisher.notify()
        self.alarms.wake()
        self.trends.wake()
        for function in self.functions:
            function.wake()

    def _log_event(self, kind: str, source: str, message: str, severity: str) -> None:
        self.events.record(kind, source, message, severity, datetime.now(UTC))

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(self.config_check_interval)
            try:
                revision = await self.run_in_db(store.config_revision)
                if self.config is None or revision != self.config.revision:
                    await self.reload()
            except DatabaseUnavailable:
                pass  # logged once per outage; the running configuration stays
            except Exception:
                log.exception("configuration reload failed; keeping the running configuration")

    def _alarm_action(self, message: dict[str, Any]) -> dict[str, Any]:
        """Apply an operator's alarm action on the active node; a standby refuses (it runs no BMS functions)."""
        if not (self.role.active and self.alarms.running):
            return {
                "error": "not_active",
                "detail": "this node is not the active one: alarm actions go to the active node",
            }
        seconds = message.get("seconds")
        try:
            return self.alarms.act(
                str(message.get("action", "")),
                [str(name) for name in message.get("alarms") or []],
                str(message.get("user", "")),
                str(message.get("comment", "")),
                float(seconds) if seconds is not None else None,
                bool(message.get("until_normal", False)),
            )
        except (TypeError, ValueError) as exc:
            return {"error": "invalid", "detail": str(exc)}

    async def _serve_requests(self) -> None:
        failures = OutageLog(
            "serving engine channel requests failed",
            "serving engine channel requests works again",
            logger=log,
            remind_every=500,
            traceback=True,
        )
        while True:
            try:
                await self._serve_one(await self.layer.receive(self.channel))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The channel layer is down or a reply could not be sent; the
                # requester times out and retries, so keep serving (logged once per run).
                failures.failed(exc)
                await asyncio.sleep(0.5)
            else:
                failures.worked()

    async def _serve_one(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == bus.SNAPSHOT_REQUEST and isinstance(message.get("reply_to"), str):
            await self.layer.send(message["reply_to"], {"type": bus.LIVE_SNAPSHOT, **self.image.snapshot()})
        elif kind == bus.COMMANDS_PENDING:
            self.commands.wake()
        elif kind == bus.ALARM_ACTION and isinstance(message.get("reply_to"), str):
            await self.layer.send(message["reply_to"], {"type": bus.ALARM_RESULT, **self._alarm_action(message)})
        else:
            log.warning("engine channel: ignoring message of type %r", kind)
