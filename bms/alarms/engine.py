"""The alarm engine: conditions evaluated on the engine loop, states in the process image, transitions journalled.

Runs inside the node's real-time engine (:class:`bms.engine.runner.Engine`),
on its loop, and only while the node is active:

* **Evaluation when points change.** An image cursor collects the names that
  changed (a poll answer, a quality change, a replicated takeover); one pass
  evaluates the alarms on those points (and the alarms whose setpoint or
  suppression point changed) with :func:`bms.alarms.conditions.evaluate`
  and feeds the answer to the ISA-18.2 state machine
  (:class:`bms.alarms.states.Alarm`) at the point's change time. Never per
  sample in the ORM.
* **Timers** (on- and off-delays, shelving expiry, re-alarm, end of
  chattering) wait in a heap keyed by due time; the loop wakes for the next
  one. Rate-of-change alarms are also sampled every
  :data:`RATE_SAMPLE_SECONDS`, so a step after a long steady spell is measured
  over seconds, not over the whole spell.
* **States are part of the process image**: the entry ``alarm:<name>``
  holds what a console shows with the state machine packed beside it (a
  flat dict, :func:`bms.alarms.spec.entry_value`), and ``alarms:summary`` the
  unacknowledged and active counts per class. They carry ``seq``, reach websocket clients as snapshot + deltas and
  replicate to the standby with the values; a node that takes over adopts
  the replicated states (timers continue from source times, not from the
  takeover), and a cold start resumes from the journal's last row per alarm.
* **Every transition is journalled** through an :class:`~bms.engine.outbox.Outbox`
  (written off the loop, in batches). Transitions are numbered per alarm and
  the journal holds one row per number, so a transition written by both
  nodes around a takeover is stored once; if the replicated state says a
  transition happened that the journal lacks (the old node died before its
  row reached the partner), the new active node writes it again, marked
  ``recovered`` (ADR 0014).
* **Operator actions** (acknowledge, shelve, unshelve) arrive as engine
  channel requests (:mod:`bms.alarms.actions`) and are applied here, on the
  active node only.
* **A flood never holds the loop**: the alarms whose points changed wait in
  a queue and are evaluated (and due timers fired) in slices of at most
  :data:`SLICE_SECONDS`, with the loop free in between to poll, publish and
  replicate what the last slice changed.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import itertools
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bms.alarms import store
from bms.alarms.conditions import USABLE_QUALITIES, Kind, evaluate, usable
from bms.alarms.spec import SUMMARY_ENTRY, AlarmSpec, entry_state, entry_value, fixed_fields
from bms.alarms.states import (
    Alarm,
    AlarmActionRefused,
    AlarmState,
    State,
    Transition,
    TransitionKind,
)
from bms.engine.image import GOOD, ProcessImage
from bms.engine.outbox import Outbox
from bms.engine.role import RoleGate
from bms.engine.tasks import cancel_and_wait, run_slices, woken_or_due
from bms.engine.turns import TURN_SLICE_SECONDS, TurnBudget, slice_deadline

#: the refusal of an action on an alarm this engine does not hold (pages and the API answer a hidden one alike)
UNKNOWN_ALARM = "no such alarm (unknown, disabled or on a disabled point)"
log = logging.getLogger(__name__)

#: rate-of-change alarms are sampled at least this often (seconds)
RATE_SAMPLE_SECONDS = 5.0
#: the longest a slice of evaluation or timers runs before the loop is free again (seconds); with the engine's turn
#: budget, the turn's end comes first
SLICE_SECONDS = TURN_SLICE_SECONDS
#: the slice's clock is read once per this many alarms
CLOCK_EVERY = 32
ACTIONS = ("acknowledge", "shelve", "unshelve")
_ACTION_TRANSITION = {
    "acknowledge": TransitionKind.ACKNOWLEDGED,
    "shelve": TransitionKind.SHELVED,
    "unshelve": TransitionKind.UNSHELVED,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_ACTIVE = (State.ACTIVE_UNACKED, State.ACTIVE_ACKED)
_UNACKED = (State.ACTIVE_UNACKED, State.RTN_UNACKED)


@dataclass(slots=True)
class AlarmRuntime:
    """One alarm on the engine: its definition, its state machine and what evaluation remembers."""

    spec: AlarmSpec
    alarm: Alarm
    #: the part of the image entry that only the definition says (:func:`bms.alarms.spec.fixed_fields`)
    fixed: dict[str, Any] = field(default_factory=dict)
    #: the message for a value, ``(value, text)``: an entry published again with the same value reuses the text
    shown: tuple[Any, str] | None = None
    #: the last usable sample ``(value, time)``, for rate of change
    previous: tuple[float, datetime] | None = None
    #: the due time this alarm has in the timer heap (None: none)
    scheduled: datetime | None = None
    #: the last transition, as the image entry carries it (a successor rebuilds a lost journal row from it)
    last: dict[str, Any] | None = field(default=None)
    #: what this alarm adds to the summary now: (class, unacknowledged, active, priority), None: nothing
    counted: tuple[str, bool, bool, int] | None = None


def _plain(value: Any) -> Any:
    """A value the journal (JSON) and the wire can carry: a non-finite float becomes None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _us(when: datetime | None) -> int | None:
    return None if when is None else (when - _EPOCH) // _MICROSECOND


class AlarmEngine:
    """All alarms of one node. ``configure`` on every configuration load, ``take_control`` when the node becomes
    active; ``start``/``stop`` run its task on the engine loop."""

    def __init__(
        self,
        image: ProcessImage,
        role: RoleGate,
        journal: Outbox[store.JournalItem],
        changed: Callable[[], None],
        run_in_db: Callable[..., Awaitable[Any]],
        turns: TurnBudget | None = None,
    ) -> None:
        self.image = image
        #: the engine loop's shared turn budget: evaluation slices take turns with poll answers and other slices
        self.turns = turns
        self.role = role
        self.journal = journal
        self.changed = changed
        self.run_in_db = run_in_db
        self.runtimes: dict[str, AlarmRuntime] = {}
        #: point name -> the alarms that read it (as their point, setpoint or suppression point)
        self.readers: dict[str, list[AlarmRuntime]] = {}
        self.rate_alarms: list[AlarmRuntime] = []
        self._cursor = image.cursor()
        self._timers: list[tuple[datetime, int, str]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._summary: dict[str, Any] | None = None
        #: the summary's counts, kept up to date transition by transition (recounting walks every alarm)
        self._unacked: Counter[str] = Counter()
        self._active: Counter[str] = Counter()
        self._unacked_priorities: Counter[int] = Counter()
        self._classes: list[dict[str, Any]] = []
        self._summary_stale = True
        #: alarms whose points changed, waiting for their slice (in order), and their names
        self._queue: deque[AlarmRuntime] = deque()
        self._queued: set[str] = set()
        #: rate-of-change alarms waiting for their periodic sample
        self._samples: deque[AlarmRuntime] = deque()
        self._next_rate_sample: datetime | None = None
        #: the node has adopted the image's states and evaluates; False on a standby
        self.running = False
        self.evaluations = 0
        self.transitions = 0

    # ---- configuration --------------------------------------------------------------------------------------

    @staticmethod
    def entry_names(specs: Iterable[AlarmSpec]) -> list[str]:
        """The process-image entries the alarms of ``specs`` need (none without alarms)."""
        names = [spec.entry for spec in specs]
        return [*names, SUMMARY_ENTRY] if names else []

    async def configure(self, specs: Iterable[AlarmSpec]) -> None:
        """Run exactly ``specs``: keep the state of alarms that stay, take new ones' from the image.

        An alarm new to a running node without a state in the image (just defined, or enabled again) starts
        normal, its numbering continuing after the journal's last row of that name: a number the journal holds
        already would make its transitions look written (ADR 0014)."""
        specs = list(specs)
        positions: dict[str, int] = {}
        if self.running:
            fresh = [
                spec.name
                for spec in specs
                if spec.name not in self.runtimes
                and not isinstance(getattr(self.image.points.get(spec.entry), "value", None), dict)
            ]
            if fresh:
                positions = await self.run_in_db(store.journal_positions, fresh)
        wanted = {spec.name for spec in specs}
        for name in [name for name in self.runtimes if name not in wanted]:
            del self.runtimes[name]
        if not self._queued <= wanted:
            self._queue = deque(runtime for runtime in self._queue if runtime.spec.name in wanted)
            self._queued &= wanted
        self._samples.clear()
        created = []
        for spec in specs:
            runtime = self.runtimes.get(spec.name)
            if runtime is None:
                state, last = self._image_state(spec)
                state.journal_seq = max(state.journal_seq, positions.get(spec.name, 0))
                runtime = self.runtimes[spec.name] = AlarmRuntime(
                    spec, Alarm(spec.name, spec.config, state), fixed_fields(spec), last=last
                )
                created.append(runtime)
            elif runtime.spec != spec:
                runtime.spec = spec
                runtime.alarm.config = spec.config
                runtime.fixed, runtime.shown = fixed_fields(spec), None
                created.append(runtime)  # what the entry shows (class, priority, message) may have changed
        self.readers = {}
        for runtime in self.runtimes.values():
            spec = runtime.spec
            for point in {spec.point, spec.setpoint_point, spec.suppression_point} - {None}:
                self.readers.setdefault(point, []).append(runtime)
        self.rate_alarms = [rt for rt in self.runtimes.values() if rt.spec.condition.kind is Kind.RATE_OF_CHANGE]
        if not self.runtimes:
            self._summary = None
        self._count_all()  # classes, priorities or the set of alarms may have changed
        if self.running and self.role.active:
            now = datetime.now(UTC)
            self._apply_service_flags(now)
            self._evaluate_all(now)
            for runtime in created:
                self._publish(runtime)

    def _image_state(self, spec: AlarmSpec) -> tuple[AlarmState, dict[str, Any] | None]:
        """The state the image holds for ``spec`` (replicated from the active node), else a fresh one."""
        entry = self.image.points.get(spec.entry)
        if entry is not None:
            try:
                found = entry_state(entry.value)
            except (TypeError, ValueError) as exc:
                log.error("alarm %s: the image holds an unreadable state (%s); starting from normal", spec.name, exc)
            else:
                if found is not None:
                    return found
        return AlarmState(), None

    async def take_control(self) -> None:
        """The node became active: adopt the replicated states, resume cold ones from the journal, evaluate."""
        self.running = False
        missing: list[str] = []
        for runtime in self.runtimes.values():
            state, last = self._image_state(runtime.spec)
            runtime.alarm.state, runtime.last, runtime.previous, runtime.scheduled = state, last, None, None
            if self.image.points.get(runtime.spec.entry) is None or not isinstance(
                self.image.points[runtime.spec.entry].value, dict
            ):
                missing.append(runtime.spec.name)
        self._timers.clear()
        self._queue.clear()
        self._queued.clear()
        self._samples.clear()
        names = list(self.runtimes)
        if missing:
            for name, row in (await self.run_in_db(store.last_journal_rows, missing)).items():
                if name in self.runtimes:
                    self.runtimes[name].alarm.state = _resumed_state(row.state, row.alarm_seq, row.time)
        if names:
            self._recover_lost(await self.run_in_db(store.journal_positions, names))
        self._cursor.dirty.clear()
        self.running = True
        now = datetime.now(UTC)
        self._apply_service_flags(now)
        self._evaluate_all(now)
        self._tick(now)
        for runtime in self.runtimes.values():  # every entry, evaluated: a new alarm shows its point's value
            self._publish(runtime)
            self._schedule(runtime)
        self._count_all()
        self._publish_summary(force=True)
        self.changed()
        # The adopted states live until the next takeover or configuration: out of the collector's way, as the
        # engine does with what a configuration builds (a full collection walks every object not frozen)
        gc.freeze()
        log.info("alarms: %d in control (%d resumed from the journal)", len(self.runtimes), len(missing))

    def release_control(self) -> None:
        """The node is no longer active: stop evaluating (the image keeps the states for the handover)."""
        self.running = False

    def _recover_lost(self, positions: dict[str, int]) -> None:
        """Journal again each alarm's last transition if the replicated state has it and the journal does not."""
        for name, runtime in self.runtimes.items():
            number = runtime.alarm.state.journal_seq
            last = runtime.last
            if number <= positions.get(name, 0) or not last or last.get("number") != number:
                continue
            try:
                transition = Transition(
                    name,
                    TransitionKind(last["kind"]),
                    str(last.get("state", runtime.alarm.display_state)),
                    _EPOCH + timedelta(microseconds=int(last["time"])),
                    last.get("value"),
                    str(last.get("user", "")),
                    str(last.get("comment", "")),
                    int(last.get("count", 0)),
                    number,
                )
            except (KeyError, TypeError, ValueError):
                continue
            log.warning("alarm %s: transition %d (%s) is not in the journal; written again", name, number, last["kind"])
            self.journal.put((transition, runtime.spec, True))

    def _apply_service_flags(self, now: datetime) -> None:
        """An engineer's out-of-service flag (from the configuration) reaches the state machine."""
        for runtime in self.runtimes.values():
            spec = runtime.spec
            if spec.out_of_service != runtime.alarm.state.out_of_service:
                self._after(
                    runtime,
                    runtime.alarm.set_out_of_service(spec.out_of_service, now, spec.out_of_service_by),
                    force=True,
                )

    # ---- the task ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alarms")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def wake(self) -> None:
        """Points changed (called with every image change notice)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            due = []
            if self.running:
                due = [self._timers[0][0]] if self._timers else []
                if self._next_rate_sample is not None:
                    due.append(self._next_rate_sample)
            await woken_or_due(self._wake, min(due) if due else None)
            if not (self.running and self.role.active):
                self._cursor.dirty.clear()
                continue
            await run_slices(self.run_once, lambda: self.running and self.role.active, "alarm evaluation", self.turns)

    def run_once(self, now: datetime) -> bool:
        """Evaluate the alarms whose points changed, then fire the timers due by ``now``, for one slice.

        True if work is left for another slice (a slice ends after :data:`SLICE_SECONDS`)."""
        deadline = slice_deadline(self.turns, SLICE_SECONDS)
        dirty = self._cursor.dirty
        if dirty:
            names = list(dirty)
            dirty.clear()
            queue, queued, readers = self._queue, self._queued, self.readers
            for name in names:
                for runtime in readers.get(name, ()):
                    if runtime.spec.name not in queued:
                        queued.add(runtime.spec.name)
                        queue.append(runtime)
        left = self._drain(deadline, now)
        if not left:
            left = self._tick(now, deadline)
        self._publish_summary()
        self.changed()
        return left

    def _drain(self, deadline: float, now: datetime) -> bool:
        """Evaluate queued alarms until the queue is empty (False) or ``deadline`` has passed (True)."""
        queue, queued = self._queue, self._queued
        while queue:
            for _ in range(min(CLOCK_EVERY, len(queue))):
                runtime = queue.popleft()
                queued.discard(runtime.spec.name)
                self._evaluate(runtime, now)
            if queue and time.perf_counter() >= deadline:
                return True
        return False

    # ---- evaluation ------------------------------------------------------------------------------------------

    def _evaluate_all(self, now: datetime) -> None:
        for runtime in self.runtimes.values():
            self._evaluate(runtime, now)
        self._publish_summary()

    def _evaluate(self, runtime: AlarmRuntime, now: datetime, sample: bool = False) -> None:
        spec, alarm = runtime.spec, runtime.alarm
        points = self.image.points
        state = points.get(spec.point)
        if state is None:
            return
        self.evaluations += 1
        when = state.change_time if state.change_time is not None and not sample else now
        transitions: list[Transition] = []
        if spec.suppression_point is not None:
            suppressor = points.get(spec.suppression_point)
            if suppressor is not None and suppressor.quality in USABLE_QUALITIES and suppressor.value is not None:
                suppressed = bool(suppressor.value)
                if suppressed != alarm.state.suppressed:
                    transitions += alarm.set_suppressed(suppressed, max(when, suppressor.change_time or when))
        setpoint = None
        if spec.setpoint_point is not None:
            holder = points.get(spec.setpoint_point)
            if holder is not None:
                setpoint = usable(holder.value, holder.quality)
        value = _plain(state.value)
        previous = runtime.previous
        condition = evaluate(
            spec.condition,
            value,
            state.quality,
            when,
            active=alarm.state.condition,
            setpoint=setpoint,
            previous_value=previous[0] if previous else None,
            previous_time=previous[1] if previous else None,
        )
        if spec.condition.kind is Kind.RATE_OF_CHANGE:
            number = usable(value, state.quality)
            if number is not None:
                runtime.previous = (number, when)
        before = _tracked(alarm.state)
        # a quality alarm is about the quality: its journal rows and message carry it, not the stale value
        transitions += alarm.update(condition, when, state.quality if spec.condition.kind is Kind.QUALITY else value)
        self._after(runtime, transitions, force=_tracked(alarm.state) != before)

    def _tick(self, now: datetime, deadline: float = math.inf) -> bool:
        """Fire the timers due by ``now`` and take the periodic rate samples; True if ``deadline`` cut it short."""
        timers = self._timers
        fired = 0
        while timers and timers[0][0] <= now:
            fired += 1
            if fired % CLOCK_EVERY == 0 and time.perf_counter() >= deadline:
                return True
            due, _, name = heapq.heappop(timers)
            runtime = self.runtimes.get(name)
            if runtime is None or runtime.scheduled != due:
                continue  # the alarm went away or its timer moved since
            runtime.scheduled = None
            before = _tracked(runtime.alarm.state)
            transitions = runtime.alarm.tick(now)
            self._after(runtime, transitions, force=_tracked(runtime.alarm.state) != before)
            if runtime.scheduled is None:
                self._schedule(runtime)
        if not self.rate_alarms:
            self._next_rate_sample = None
            self._samples.clear()
            return False
        if not self._samples and (self._next_rate_sample is None or self._next_rate_sample <= now):
            self._samples.extend(self.rate_alarms)
            self._next_rate_sample = now + timedelta(seconds=RATE_SAMPLE_SECONDS)
        samples = self._samples
        while samples:
            for _ in range(min(CLOCK_EVERY, len(samples))):
                self._evaluate(samples.popleft(), now, sample=True)
            if samples and time.perf_counter() >= deadline:
                return True
        return False

    def _schedule(self, runtime: AlarmRuntime) -> None:
        due = runtime.alarm.next_deadline()
        if due is None or due == runtime.scheduled:
            return
        if not self._timers or due < self._timers[0][0]:
            self._wake.set()  # the loop sleeps until the earliest timer it knew of: this one is earlier
        runtime.scheduled = due
        heapq.heappush(self._timers, (due, next(self._order), runtime.spec.name))

    def _after(self, runtime: AlarmRuntime, transitions: list[Transition], force: bool = False) -> None:
        """Journal ``transitions``, and publish the alarm's entry if anything the image carries changed."""
        for transition in transitions:
            self.journal.put((transition, runtime.spec, False))
            runtime.last = {
                "kind": transition.kind.value,
                "state": transition.state,
                "time": _us(transition.time),
                "value": _plain(transition.value),
                "user": transition.user,
                "comment": transition.comment,
                "count": transition.count,
                "number": transition.number,
            }
        self.transitions += len(transitions)
        if transitions:
            self._recount(runtime)
        if transitions or force:
            self._publish(runtime)
            self._schedule(runtime)

    def _publish(self, runtime: AlarmRuntime) -> None:
        alarm = runtime.alarm
        state = alarm.state
        display = alarm.display_state
        value = _plain(state.value)
        shown = runtime.shown
        if shown is None or shown[0] != value or type(shown[0]) is not type(value):
            shown = runtime.shown = (value, runtime.spec.message(value))
        self.image.put(
            runtime.spec.entry,
            entry_value(runtime.fixed, state, display, value, shown[1], runtime.last),
            display,
            state.since or datetime.now(UTC),
        )

    @staticmethod
    def _contribution(runtime: AlarmRuntime) -> tuple[str, bool, bool, int] | None:
        spec, alarm = runtime.spec, runtime.alarm
        if not spec.annunciated or alarm.inhibit is not None:
            return None
        state = alarm.state.state
        return spec.alarm_class, state in _UNACKED, state in _ACTIVE, spec.priority

    def _recount(self, runtime: AlarmRuntime) -> None:
        """Move ``runtime``'s part of the summary counts to what its state says now."""
        new = self._contribution(runtime)
        old = runtime.counted
        if new == old:
            return
        for part, sign in ((old, -1), (new, 1)):
            if part is None:
                continue
            alarm_class, unacked, active, priority = part
            if unacked:
                self._unacked[alarm_class] += sign
                self._unacked_priorities[priority] += sign
            if active:
                self._active[alarm_class] += sign
        runtime.counted = new
        self._summary_stale = True

    def _count_all(self) -> None:
        """Count every alarm afresh (the set of alarms or their classes changed)."""
        self._unacked.clear()
        self._active.clear()
        self._unacked_priorities.clear()
        classes: dict[str, tuple[int, str]] = {}
        for runtime in self.runtimes.values():
            spec = runtime.spec
            if spec.annunciated:
                rank = classes.get(spec.alarm_class)
                if rank is None or spec.priority < rank[0]:
                    classes[spec.alarm_class] = (spec.priority, spec.colour)
            runtime.counted = None
            self._recount(runtime)
        self._classes = [
            {"name": name, "colour": colour, "priority": priority}
            for name, (priority, colour) in sorted(classes.items(), key=lambda item: (item[1][0], item[0]))
        ]
        self._summary_stale = True

    def _publish_summary(self, force: bool = False) -> None:
        if not self.runtimes or not (force or self._summary_stale):
            return
        self._summary_stale = False
        unacked = {name: count for name, count in self._unacked.items() if count > 0}
        priorities = [priority for priority, count in self._unacked_priorities.items() if count > 0]
        summary = {
            "unacked": unacked,
            "active": {name: count for name, count in self._active.items() if count > 0},
            "unacked_total": sum(unacked.values()),
            "highest_unacked_priority": min(priorities) if priorities else None,
            "classes": self._classes,
        }
        if force or summary != self._summary:
            self._summary = summary
            self.image.put(SUMMARY_ENTRY, summary, GOOD, datetime.now(UTC))

    # ---- operator actions ------------------------------------------------------------------------------------

    def act(
        self,
        action: str,
        names: list[str],
        user: str,
        comment: str = "",
        seconds: float | None = None,
        until_normal: bool = False,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Apply an operator action to ``names``: ``{"done", "unchanged", "refused": {name: reason}}``.

        Raises ValueError for an unknown action or a missing user; the caller checked the role."""
        if action not in ACTIONS:
            raise ValueError(f"unknown alarm action {action!r}; use one of {', '.join(ACTIONS)}")
        if not user:
            raise ValueError("an alarm action needs the user who made it")
        now = now or datetime.now(UTC)
        done: list[str] = []
        unchanged: list[str] = []
        refused: dict[str, str] = {}
        wanted = _ACTION_TRANSITION[action]
        for name in dict.fromkeys(names):
            runtime = self.runtimes.get(name)
            if runtime is None:
                refused[name] = UNKNOWN_ALARM
                continue
            alarm = runtime.alarm
            try:
                if action == "acknowledge":
                    transitions = alarm.acknowledge(now, user, comment)
                elif action == "shelve":
                    transitions = alarm.shelve(now, user, seconds=seconds, until_normal=until_normal, comment=comment)
                else:
                    transitions = alarm.unshelve(now, user, comment)
            except (AlarmActionRefused, ValueError) as exc:
                refused[name] = str(exc)
                continue
            (done if any(t.kind is wanted for t in transitions) else unchanged).append(name)
            self._after(runtime, transitions, force=True)
        self._publish_summary()
        self.changed()
        return {"done": done, "unchanged": unchanged, "refused": refused}

    def stats(self) -> dict[str, int]:
        return {
            "alarms": len(self.runtimes),
            "evaluations": self.evaluations,
            "transitions": self.transitions,
            "journal_waiting": self.journal.waiting,
            "journal_dropped": self.journal.dropped,
        }


def _tracked(state: AlarmState) -> tuple[Any, ...]:
    """What of a state must reach the image (and the standby) even without a transition: the raw condition and
    a running delay, so a successor continues an on-delay from its start."""
    return state.condition, state.active, state.pending_since, state.state, state.suppressed


def _resumed_state(display: str, number: int, since: datetime) -> AlarmState:
    """A cold start's state of an alarm whose last journal row left it in ``display`` (numbering continues).

    Shelving, suppression and out of service are not resumed (the configuration and the points say them
    again); an active alarm resumes active with its condition, so a condition that still holds is not raised
    a second time."""
    try:
        state = State(display)
    except ValueError:
        state = State.NORMAL
    active = state in _ACTIVE
    return AlarmState(state=state, since=since, condition=active, active=active, journal_seq=number)
