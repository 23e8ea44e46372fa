"""Running logic rules: which are due, their inputs, blocks, quality policy and the commands they make. Pure.

:class:`RuleRunner` is what the engine holds: built from the loaded
:class:`~bms.logic.spec.RuleSpec` s and the rules' replicated states, it is
asked to :meth:`~RuleRunner.evaluate` at ``now`` with the process image's
points (any mapping of name -> ``PointState`` / :class:`~bms.logic.expr.Sample`
/ ``(value, quality)``) and the names that changed since the last call. It
answers with the commands to submit and the state entries to write into the
image; it never reads the clock, the database or the image by itself.

When a rule runs: when a point it reads changed, when its cycle is due
(every ``cycle_time`` seconds), and when a timer of its block is due
(:meth:`RuleRunner.next_deadline` says when to call next). Due times wait in
a heap, so a call costs what is due, not the number of rules; with a
``limit`` (and a ``deadline``) a call runs at most that many (until then) and keeps the rest due
(:attr:`RuleRunner.pending`), so the engine can run a flood in slices.

A rule due with unchanged inputs and at rest is not computed (:meth:`RuleRunner._rests`); a block at rest
(a saturated PID, a settled rate limiter, a totalizer of a zero flow) then sleeps: it is not due on its
cycle until its state is next handed out (every :data:`STATE_INTERVAL`) or an input moves, and the cycles
it slept through are replayed as rests when it wakes (:meth:`RuleRunner._catch_up`, from the times of the
calls it would have run in): what it hands out and commands is what running every cycle would give
(``tests/logic/test_rest.py``), at a fifth fewer rule runs on the bench's mix (2,715 -> 2,134 a second).

What a run does: every input expression is evaluated. If one is **bad**,
the block is not stepped (its state, timers and integrators included, stays
as it was) and the rule's quality policy applies: ``hold`` commands
nothing (the last command stands), ``fallback`` commands the fallback value,
``relinquish`` releases the rule's priority slot (a command with value
``None``) once. Otherwise (good or uncertain) the block is stepped (a PID that has no
state and no ``track`` input starts from its output point's present value,
so enabling it is bumpless) and each
output is converted to what its point accepts (range, resolution) and
commanded **if it differs from the last command** by more than the rule's
deadband (and always when it reaches an end of its range): a rule whose
output is steady makes no commands.

Each command has a number, counted per rule in the rule's state, and the id
``logic:<rule>:<number>``: replicated with the state, so a node that takes
over continues the numbering and the same command is not recorded twice.

A command that ends without being known at its device (``failed``: the
device did not take it or the standby did not confirm it; ``expired``: a
backlog outlived its lifetime; ``unknown``: the device did not answer the
write) is reported back (:meth:`RuleRunner.command_ended`): if it is
still its output's latest command, the rule forgets that it commanded that
value and commands it again at its next run, the first time at once, then
after a back-off doubling up to a minute (:mod:`bms.engine.retry`). An output believed
commanded while its device never got the value would never be commanded
again while the value stood still (ADR 0018).

A rule's state (image entry ``logic:<rule>``, :class:`RuleState`): its
block's state, the last value commanded per output, the command count, the
quality and reason of the last run. It is handed out only when one of those
changed, so a steady expression rule makes no image traffic; a change of the
block's bookkeeping alone (when it last stepped, what it last read, run
hours) waits up to :data:`STATE_INTERVAL` and goes with a later run, so a
saturated PID writes its entry every 5 s, not every sample, while a PID in
control (its integral moves) writes it at every sample as before.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bms.engine.retry import retry_delay
from bms.logic.blocks import PID, Block
from bms.logic.expr import Quality, Type, input_quality
from bms.logic.spec import FALLBACK, RELINQUISH, OutputSpec, RuleSpec, entry_name, evaluation_order

log = logging.getLogger(__name__)

VALUE, FALLBACK_REASON, RELINQUISH_REASON, REASSERT = "value", "fallback", "relinquish", "reassert"
#: the longest a change of a block's own state (integrators, sample times) waits before it reaches the image: a PID
#: sampled every second changed its image entry every second, image and sync-link traffic for nothing an operator
#: reads; a node that takes over continues from a state at most this old (ADR 0018)
STATE_INTERVAL = timedelta(seconds=5)
#: with a deadline, the clock is read once per this many rules
CLOCK_EVERY = 16
#: how long the runner remembers when it was called: a resting block's skipped cycles are replayed from these
#: times (:meth:`RuleRunner._catch_up`); it is woken at the latest when its state is next handed out
#: (STATE_INTERVAL after the last time), so this is twice that, with room for slices that ran late
PASS_MEMORY = 2 * STATE_INTERVAL
#: the latest time there is: "every call so far"
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)
_LABELS = {quality: quality.label for quality in Quality}
_BAD_LABEL = Quality.BAD.label
_GOOD, _BAD = Quality.GOOD, Quality.BAD
#: block state fields whose change alone may wait for STATE_INTERVAL: when a block last stepped, what it last read,
#: run hours; a node taking over with them a few seconds old steps once over a longer interval. Everything else
#: (integrals, outputs, commands, counts, quality) reaches the image at once, so a loop in control continues
#: from its last step.
_BOOKKEEPING = frozenset({"last_time", "last_pv", "last_value", "runtime"})
#: a value no rule produces (:attr:`_Rule.made` before the first)
_NOTHING = object()


@dataclass(frozen=True, slots=True)
class LogicCommand:
    """One write a rule asks for: ``value`` None releases the rule's priority slot (relinquish)."""

    rule: str
    point: str
    value: bool | int | float | None
    priority: int
    #: the command's number in its rule's life (RuleState.number after it)
    number: int
    #: why: value, fallback, relinquish or reassert
    reason: str = VALUE

    @property
    def command_id(self) -> str:
        """A stable id for the command path (the same command twice is executed once)."""
        return command_id(self.rule, self.number)


#: the longest command id the command path accepts
MAX_COMMAND_ID = 64


def command_id(rule: str, number: int) -> str:
    """``logic:<rule>:<number>``; for a rule name the command path could not carry in an id (a saved rule's
    name always fits: at most 40 letters, digits, ``_ . -``), ``logic:h<hash of the name>:<number>``."""
    plain = f"logic:{rule}:{number}"
    if len(plain) <= MAX_COMMAND_ID and rule.isascii() and all(c.isalnum() or c in "_.-" for c in rule):
        return plain
    return f"logic:h{hashlib.sha256(rule.encode()).hexdigest()[:20]}:{number}"


@dataclass(slots=True)
class RuleState:
    """Everything a rule remembers (image entry ``logic:<rule>``), as a small JSON-safe dict (:meth:`to_dict`)."""

    #: the block kind the block state belongs to ("" for an expression rule)
    kind: str = ""
    block: dict[str, Any] = field(default_factory=dict)
    #: the last value commanded, per output (None: nothing commanded, or relinquished)
    out: list[Any] = field(default_factory=list)
    #: commands so far
    number: int = 0
    #: the last run's quality (good, uncertain, bad) and, when bad, why
    quality: str = Quality.GOOD.label
    reason: str = ""

    def matches(self, data: Mapping[str, Any] | None, bookkeeping: bool = True) -> bool:
        """``self.to_dict() == data``, without building the dict: a rule's state is compared with the one last
        handed out after every run, and most runs change nothing. ``bookkeeping`` False: the block's
        :data:`_BOOKKEEPING` fields may differ (its state may wait for :data:`STATE_INTERVAL`).

        Each field is compared with its default when :meth:`to_dict` leaves it out; the key count catches a
        default present as a key, or a key :meth:`to_dict` never writes."""
        if data is None:
            return False
        out = self.out
        has_out = out.count(None) != len(out)
        keys = 1 + bool(self.kind) + bool(self.block) + has_out + bool(self.number) + bool(self.reason)
        if not (
            len(data) == keys
            and data.get("q") == self.quality
            and data.get("k", "") == self.kind
            and data.get("n", 0) == self.number
            and data.get("why", "") == self.reason
            and (data.get("out") == out if has_out else "out" not in data)
        ):
            return False
        block, old = self.block, data.get("block", {})
        if bookkeeping:
            return old == block
        return old.keys() == block.keys() and all(
            value == old[name] for name, value in block.items() if name not in _BOOKKEEPING
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"q": self.quality}
        if self.kind:
            data["k"] = self.kind
        if self.block:
            data["block"] = dict(self.block)
        if self.out.count(None) != len(self.out):
            data["out"] = list(self.out)
        if self.number:
            data["n"] = self.number
        if self.reason:
            data["why"] = self.reason
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RuleState:
        if not data:
            return cls()
        block = data.get("block")
        out = data.get("out")
        return cls(
            kind=str(data.get("k", "")),
            block=dict(block) if isinstance(block, Mapping) else {},
            out=list(out) if isinstance(out, list | tuple) else [],
            number=int(data.get("n", 0)),
            quality=str(data.get("q", Quality.GOOD.label)),
            reason=str(data.get("why", "")),
        )


@dataclass(slots=True)
class RunResult:
    """What a call did: the commands to submit (in order) and the image entries whose state changed."""

    commands: list[LogicCommand] = field(default_factory=list)
    #: image entry (``logic:<rule>``) -> the rule's new state dict
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the rules that ran, in order
    evaluated: list[str] = field(default_factory=list)
    #: rests: a rule due with unchanged inputs and at rest, so nothing was computed (see _rests), among those that
    #: ran, or a cycle a sleeping block slept through, replayed when it woke (see _catch_up); a rule once per rest
    rested: list[str] = field(default_factory=list)


class _Rule:
    __slots__ = (
        "block",
        "cycle",
        "defaults",
        "emitted",
        "emitted_at",
        "emitted_key",
        "failures",
        "index",
        "inputs",
        "latest",
        "lazy",
        "made",
        "made_as",
        "moved",
        "next_cycle",
        "queued",
        "retry_at",
        "scheduled",
        "spec",
        "state",
    )

    def __init__(self, spec: RuleSpec, data: Mapping[str, Any] | None, index: int = 0) -> None:
        self.spec = spec
        #: the rule's place in the evaluation order
        self.index = index
        #: the block's unbound optional inputs with their defaults (the same at every run)
        self.defaults = spec.slot_defaults()
        self.emitted = dict(data) if data else None
        #: when the state was last handed out (None: not since this runner was built)
        self.emitted_at: datetime | None = None
        #: a rule without a block: (quality, reason, number) when its state was last handed out or found unchanged
        #: (``out`` moves with ``number``; :meth:`RuleRunner.command_ended` clears it), None: compare in full
        self.emitted_key: tuple[str, str, int] | None = None
        self.next_cycle: datetime | None = None
        self.cycle = timedelta(seconds=spec.cycle_time)
        #: the due time of this rule's entry in the runner's timer heap (None: none)
        self.scheduled: datetime | None = None
        #: something it reads changed (or it was asked to run in full) since it last ran in full
        self.moved = True
        #: its block's inputs at the last step (None: not stepped since this runner was built)
        self.inputs: dict[str, Any] | None = None
        #: it rested at its last run and its cycles since are not run: they are replayed when it next runs
        #: (RuleRunner._catch_up)
        self.lazy = False
        #: it is in the runner's queue of due rules (RuleRunner._enqueue)
        self.queued = False
        state = RuleState.from_dict(data)
        kind = spec.kind if spec.is_block else ""
        if state.kind != kind:
            state.kind, state.block = kind, {}
        count = len(spec.outputs)
        state.out = (state.out + [None] * count)[:count]
        self.state = state
        #: per output: the number of its latest command (0: none since this runner was built), the failed
        #: commands in a row, and when it may be commanded again after one failed (None: any time)
        self.latest = [0] * count
        self.failures = [0] * count
        self.retry_at: list[datetime | None] = [None] * count
        #: per output: the value last produced and what it converted to (a steady output is not converted again)
        self.made: list[Any] = [_NOTHING] * count
        self.made_as: list[Any] = [None] * count
        self.block: Block | None = None
        if spec.is_block:
            try:
                self.block = spec.new_block(state.block)
            except (TypeError, ValueError, KeyError, OverflowError):
                log.warning("logic rule %s: its replicated block state could not be read; starting afresh", spec.name)
                self.block = spec.new_block(None)
                state.block = {}


class RuleRunner:
    """The rules of one configuration and their states; :meth:`evaluate` runs the due ones."""

    def __init__(self, specs: Iterable[RuleSpec], states: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """``states``: image entry (``logic:<rule>``) -> state dict, e.g. the replicated image's entries after a
        takeover, or :meth:`states` of the runner this one replaces after a configuration change."""
        states = states or {}
        self._rules = [_Rule(spec, states.get(spec.entry), index) for index, spec in enumerate(evaluation_order(specs))]
        self._by_name = {rule.spec.name: rule for rule in self._rules}
        # command id without its number -> rule (a long or non-ASCII name's ids carry a hash of it)
        self._by_id_prefix = {command_id(rule.spec.name, 0).rpartition(":")[0]: rule for rule in self._rules}
        self._readers: dict[str, list[_Rule]] = {}
        for rule in self._rules:
            for point in rule.spec.points:
                self._readers.setdefault(point, []).append(rule)
        # When rules are due with unchanged inputs (cycle, block timer): a heap of (due, order, rule), one live
        # entry per rule (``rule.scheduled``; stale ones are skipped), so a call looks only at what is due, not
        # at every rule: with thousands of rules the engine calls this after every poll answer.
        self._timers: list[tuple[datetime, int, _Rule]] = []
        self._order = itertools.count()
        #: the indices of the rules due (a changed input, a timer, a call with a ``limit`` left them for the next
        #: call): a heap, so a slice takes its rules in evaluation order at the cost of what it runs, not of what
        #: waits (a backlog of thousands re-selected at every slice was most of the passes' time on a busy host)
        self._queue: list[int] = []
        self._started = False
        #: the times of the calls of the last PASS_MEMORY (ascending): when a resting block's skipped cycles fell
        #: due (_catch_up)
        self._passes: list[datetime] = []

    @property
    def specs(self) -> list[RuleSpec]:
        """The rules, in evaluation order (a rule after those whose outputs it reads)."""
        return [rule.spec for rule in self._rules]

    @property
    def points(self) -> frozenset[str]:
        """Every point some rule reads: a change of one of these is worth a call."""
        return frozenset(self._readers)

    def states(self) -> dict[str, dict[str, Any]]:
        """Every rule's state by image entry (a resting block's bookkeeping included: see :meth:`_rests`)."""
        for rule in self._rules:
            if rule.lazy:
                self._catch_up(rule, _END_OF_TIME, None)
            if rule.block is not None and rule.inputs is not None:
                rule.state.block = rule.block.to_dict()
        return {rule.spec.entry: rule.state.to_dict() for rule in self._rules}

    def state_of(self, rule: str) -> RuleState:
        return self._by_name[rule].state

    def block_of(self, rule: str) -> Block | None:
        return self._by_name[rule].block

    def next_deadline(self) -> datetime | None:
        """The earliest time a rule is due with unchanged inputs (cycle or timer); None before the first call."""
        if not self._started:
            return None
        timers = self._timers
        while timers and timers[0][2].scheduled != timers[0][0]:
            heapq.heappop(timers)  # the rule ran since, or went: its entry moved
        return timers[0][0] if timers else None

    @property
    def pending(self) -> bool:
        """True when a call with a ``limit`` left due rules for the next call (call again soon)."""
        return bool(self._queue)

    def evaluate(
        self,
        now: datetime,
        values: Mapping[str, Any],
        changed: Iterable[str] | None = None,
        limit: int | None = None,
        deadline: float | None = None,
    ) -> RunResult:
        """Run the rules due at ``now``: those reading a point in ``changed`` (None: every rule), those whose cycle
        or timer is due, in evaluation order. ``values``: point name -> PointState / Sample / ``(value, quality)``.

        ``limit``: run at most this many; the others stay due for the next call (:attr:`pending`), so a caller on
        an event loop can evaluate a flood of changes in slices. ``deadline`` (``time.perf_counter()``): the slice
        also ends there (the clock is read every :data:`CLOCK_EVERY` rules, and at least that many run), the rest
        of its batch stays due."""
        if not isinstance(now, datetime) or now.tzinfo is None:
            raise ValueError(f"logic times must be timezone-aware (UTC) datetimes, not {now!r}")
        passes = self._passes
        if not passes or now > passes[-1]:
            passes.append(now)
            if passes[0] < now - PASS_MEMORY:
                del passes[: bisect.bisect_left(passes, now - PASS_MEMORY)]
        queue, rules, enqueue = self._queue, self._rules, self._enqueue
        if changed is None or not self._started:
            for rule in rules:
                rule.moved = rule.queued = True
            queue[:] = range(len(rules))  # ascending: a heap already
            self._started = True
        else:
            readers = self._readers
            # the engine passes every name that changed in the image (thousands a second, most read by no rule):
            # the intersection runs in C, where a lookup per name in Python was an eighth of the passes' time
            for point in readers.keys() & changed:
                for rule in readers[point]:
                    rule.moved = True
                    enqueue(rule)
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, _, rule = heapq.heappop(timers)
            if rule.scheduled == due:
                rule.scheduled = None
                enqueue(rule)
        result = RunResult()
        done, most = 0, len(queue) if limit is None else limit
        pop = heapq.heappop
        while queue and done < most:
            rule = rules[pop(queue)]
            rule.queued = False
            done += 1
            if not rule.lazy or self._wakes(rule, now, result):
                self._run(rule, now, values, result)
            self._schedule(rule)
            if deadline is not None and not done % CLOCK_EVERY and time.perf_counter() >= deadline:
                break  # the rest stays queued, in order, for the next call
        return result

    def adopt_outcomes(self, old: RuleRunner) -> None:
        """Keep what ``old`` knew of its rules' latest commands and failures (this runner replaces it after a
        configuration change), so a command in flight across the change is still followed."""
        for rule in self._rules:
            before = old._by_name.get(rule.spec.name)
            if before is not None and len(before.latest) == len(rule.latest):
                rule.latest, rule.failures = before.latest[:], before.failures[:]
                rule.retry_at = before.retry_at[:]

    def command_ended(self, command: str, succeeded: bool, now: datetime) -> bool:
        """The command with id ``command`` reached its end: ``succeeded``, or not (failed, expired or unknown:
        not known to be at its device). True if the rule now wants to command its output again (it is due at the
        next call).

        Only an output's latest value command counts: an older one was overtaken by a later command, and a
        relinquish that failed leaves nothing to command (the rule's slot may still hold its last value)."""
        prefix, _, number = command.rpartition(":")
        rule = self._by_id_prefix.get(prefix)
        if rule is None or not number.isdigit():
            return False
        try:
            index = rule.latest.index(int(number))
        except ValueError:
            return False
        if succeeded:
            rule.failures[index], rule.retry_at[index] = 0, None
            return False
        if rule.state.out[index] is None:
            return False
        rule.failures[index] += 1
        rule.retry_at[index] = now + retry_delay(rule.failures[index])
        rule.state.out[index] = None  # not commanded: the next run commands the value it wants then
        rule.emitted_key = None
        rule.latest[index] = 0
        rule.moved = True
        self._enqueue(rule)
        return True

    def reassert(self) -> RunResult:
        """Command every rule's last commanded values again (new numbers): for a node that has just taken over,
        whose devices may have lost or never seen the old node's last writes."""
        result = RunResult()
        for rule in self._rules:
            if rule.lazy:  # awake from here on: the hand-out below has no time to count the next one from
                self._catch_up(rule, _END_OF_TIME, None)
                rule.lazy = False
                self._schedule(rule)
            for index, value in enumerate(rule.state.out):
                if value is not None:
                    self._command(rule, index, value, REASSERT, result)
            self._emit(rule, result)
        return result

    # ---- inside ------------------------------------------------------------------------------------------------------

    def _enqueue(self, rule: _Rule) -> None:
        """Make ``rule`` due at the next call (once: a rule already waiting keeps its place)."""
        if not rule.queued:
            rule.queued = True
            heapq.heappush(self._queue, rule.index)

    def _schedule(self, rule: _Rule) -> None:
        """Put ``rule``'s next due time (cycle or block timer, whichever is first; for a resting block, when its
        state is next handed out) in the heap."""
        if rule.lazy:
            due = _lazy_due(rule)  # a sleeping block has no timer (it would not sleep)
        else:
            due = rule.next_cycle
            if rule.block is not None:
                deadline = rule.block.next_deadline()
                if deadline is not None and (due is None or deadline < due):
                    due = deadline
        if due is None or due == rule.scheduled:
            return
        rule.scheduled = due
        heapq.heappush(self._timers, (due, next(self._order), rule))

    def _run(self, rule: _Rule, now: datetime, values: Mapping[str, Any], result: RunResult) -> None:
        spec, state = rule.spec, rule.state
        result.evaluated.append(spec.name)
        next_cycle = rule.next_cycle
        if next_cycle is None or now >= next_cycle:
            rule.next_cycle = now + rule.cycle
        if not rule.moved and self._rests(rule, now):
            result.rested.append(spec.name)
            block = rule.block
            if block is not None:
                # a block (an expression has no bookkeeping to hand out: it rests on its cycles, cheaply) without
                # a timer sleeps until an input moves or its state is to be handed out, its cycles replayed then
                rule.lazy = block.next_deadline() is None
                if now - rule.emitted_at >= STATE_INTERVAL:
                    # its moved bookkeeping is due: the rest left the state a step would have, hand that out
                    state.block = block.to_dict()
                    self._emit(rule, result, now)
            return
        rule.moved = False
        # plain loops: this runs thousands of times a second on the engine loop (bench/logic.py)
        results = []
        bad = None
        worst = _GOOD
        for slot, expression in spec.inputs:
            found = expression.evaluate_plain(values)  # (value, quality, reason)
            results.append((slot, found))
            if found[1] > worst:
                worst = found[1]
                if bad is None and worst is _BAD:
                    bad = slot, found
        if bad is not None:
            slot, found = bad
            state.quality = _BAD_LABEL
            state.reason = f"{slot}: {found[2]}" if spec.is_block else found[2]
            self._apply_policy(rule, result, now)
        else:
            try:
                produced = self._produce(rule, now, results, values)
            except Exception as exc:  # a fault in one rule must not stop the others
                log.exception("logic rule %s failed", spec.name)
                state.quality = _BAD_LABEL
                state.reason = f"failed: {exc}"[:200]
                self._apply_policy(rule, result, now)
            else:
                state.quality = _LABELS[worst]
                state.reason = ""
                made, made_as = rule.made, rule.made_as
                for index, (output, value) in enumerate(zip(spec.outputs, produced, strict=False)):
                    last = made[index]
                    if value == last and type(value) is type(last):
                        converted = made_as[index]
                    else:
                        converted = made_as[index] = output.convert(value)
                        made[index] = value
                    if self._differs(spec, output, state.out[index], converted) and self._may_retry(rule, index, now):
                        self._command(rule, index, converted, VALUE, result)
        self._emit(rule, result, now)

    def _wakes(self, rule: _Rule, now: datetime, result: RunResult) -> bool:
        """A resting block is due (a moved input, a command that ended, its timer): replay the cycles it slept
        through; True if it runs now, False if its cycle falls due at a later call (then it sleeps on)."""
        self._catch_up(rule, now, result)
        if not rule.moved and now < _lazy_due(rule):
            return False
        rule.lazy = False
        return True

    def _catch_up(self, rule: _Rule, now: datetime, result: RunResult | None) -> None:
        """Rest ``rule``'s block at every call before ``now`` at which its cycle fell due, as :meth:`_run` would
        have at each (a cycle falls due at the first call at or after ``next_cycle``; the next one a cycle
        after that call), and move ``next_cycle`` on. Nothing but the block's bookkeeping (when it last stepped)
        moves: it was at rest with the same inputs at each (see :meth:`_rests`). Stops at the call at which the
        state was to be handed out: the rule runs there (a rest that hands the state out, or a step if something
        moved), and it is woken by then (:func:`_lazy_due`).

        Exact as long as each call runs every rule due (no ``limit``); a rule left for a later slice rests
        at the call its cycle fell due in, a slice or two earlier than the step would have."""
        passes, block, cycle = self._passes, rule.block, rule.cycle
        handed_out = rule.emitted_at + STATE_INTERVAL
        due = rule.next_cycle
        while True:
            index = bisect.bisect_left(passes, due)
            if index == len(passes):
                break
            moment = passes[index]
            if moment >= now or moment >= handed_out:
                break
            block.rest(moment)
            if result is not None:
                result.rested.append(rule.spec.name)
            due = moment + cycle
        rule.next_cycle = due

    @staticmethod
    def _rests(rule: _Rule, now: datetime) -> bool:
        """Whether a run due with unchanged inputs (its cycle, its block's timer) would change nothing, and if
        so, the block's bookkeeping moved as the step would have moved it: then nothing else is computed.

        Its inputs have not changed since its last full run (``moved`` is false: every change of a point it
        reads, a quality change included, sets it), and an expression is a pure function of them, a block at
        rest (:meth:`~bms.logic.blocks.Block.at_rest`) steps to the same state. What the full run would still
        do: command an output whose last command did not reach its device (``out`` None): that run is not
        skipped. A block's moved bookkeeping due to be handed out (every :data:`STATE_INTERVAL`) is the state
        the rest left, handed out by :meth:`_run` without a step. On the bench's 5,000 rules, half the runs a
        second were such cycles (saturated PIDs, settled rate limiters, zero flows, steady expressions), and a
        sixth of the rest were steps made only to hand out a resting block's bookkeeping (issue 12)."""
        state = rule.state
        if state.quality == _BAD_LABEL or None in state.out:
            return False
        block = rule.block
        if block is None:
            return True
        if rule.inputs is None or rule.emitted_at is None:
            return False
        if not block.at_rest(rule.inputs):
            return False
        block.rest(now)
        return True

    @staticmethod
    def _produce(
        rule: _Rule, now: datetime, results: list[tuple[str, tuple[Any, Quality, str]]], values: Mapping[str, Any]
    ) -> tuple[Any, ...]:
        if rule.block is None:
            return (results[0][1][0],)
        inputs = dict(rule.defaults)
        for slot, found in results:
            inputs[slot] = found[0]
        if isinstance(rule.block, PID) and inputs.get("track") is None and rule.block.state.output is None:
            # a PID without state and without a bound track starts from where its output point is now (bumpless)
            inputs["track"] = _usable_number(values.get(rule.spec.outputs[0].point))
        produced = rule.block.step(now, **inputs)
        rule.inputs = inputs
        rule.state.block = rule.block.to_dict()
        return produced if isinstance(produced, tuple) else (produced,)

    def _apply_policy(self, rule: _Rule, result: RunResult, now: datetime) -> None:
        spec, state = rule.spec, rule.state
        if spec.quality_policy == FALLBACK and spec.fallback_value is not None:
            for index, output in enumerate(spec.outputs):
                value = output.convert(spec.fallback_value)
                if self._differs(spec, output, state.out[index], value) and self._may_retry(rule, index, now):
                    self._command(rule, index, value, FALLBACK_REASON, result)
        elif spec.quality_policy == RELINQUISH:
            for index, last in enumerate(state.out):
                if last is not None:
                    self._command(rule, index, None, RELINQUISH_REASON, result)

    @staticmethod
    def _may_retry(rule: _Rule, index: int, now: datetime) -> bool:
        """False while an output whose command failed waits for its back-off."""
        retry_at = rule.retry_at[index]
        return retry_at is None or now >= retry_at

    @staticmethod
    def _differs(spec: RuleSpec, output: OutputSpec, last: Any, new: Any) -> bool:
        if last is None:
            return True
        if output.type is Type.BOOL or isinstance(new, bool) or isinstance(last, bool):
            return bool(new) != bool(last)
        if new == last:
            return False
        if spec.deadband <= 0:
            return True
        ends = {output.low, output.high, getattr(spec.params, "out_min", None), getattr(spec.params, "out_max", None)}
        return abs(new - last) > spec.deadband or new in ends

    @staticmethod
    def _command(rule: _Rule, index: int, value: Any, reason: str, result: RunResult) -> None:
        spec, state = rule.spec, rule.state
        state.number += 1
        state.out[index] = value
        rule.latest[index] = state.number
        result.commands.append(
            LogicCommand(spec.name, spec.outputs[index].point, value, spec.priority, state.number, reason)
        )

    @staticmethod
    def _emit(rule: _Rule, result: RunResult, now: datetime | None = None) -> None:
        """Hand out the rule's state if it changed: at once, unless only its block's bookkeeping moved (when it
        last stepped, what it last read): that at most every :data:`STATE_INTERVAL` (``now`` None: at once)."""
        state, emitted = rule.state, rule.emitted
        key = None
        if rule.block is None:
            key = (state.quality, state.reason, state.number)
            if key == rule.emitted_key:
                return
        if state.matches(emitted):
            rule.emitted_key = key
            return
        if (
            now is not None
            and emitted is not None
            and rule.emitted_at is not None
            and now - rule.emitted_at < STATE_INTERVAL
            and state.matches(emitted, bookkeeping=False)
        ):
            return  # handed out at a later run (every rule with a block state runs at least every cycle)
        data = state.to_dict()
        result.states[entry_name(rule.spec.name)] = data
        rule.emitted = data
        rule.emitted_at = now
        rule.emitted_key = key


def _lazy_due(rule: _Rule) -> datetime:
    """When a resting block must run with unchanged inputs: its cycle at which its state is to be handed out."""
    return max(rule.emitted_at + STATE_INTERVAL, rule.next_cycle)


def _usable_number(sample: Any) -> float | None:
    """The value of an image entry (PointState, Sample or tuple) if it is a usable finite number, else None."""
    if sample is None:
        return None
    if isinstance(sample, tuple):
        value, quality = sample[0], sample[1]
    else:
        value, quality = getattr(sample, "value", None), getattr(sample, "quality", None)
    if input_quality(quality) is Quality.BAD or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
