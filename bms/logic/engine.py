"""The logic engine: rules run on the engine loop, their states in the process image, their outputs commanded.

Runs inside the node's real-time engine (:class:`bms.engine.runner.Engine`)
as one of its :class:`~bms.engine.function.EngineFunction` s, on its loop,
and only while the node is active (ADR 0018):

* **When rules run.** An image cursor collects the names of the points that
  changed (a poll answer, a quality change); the
  :class:`~bms.logic.runner.RuleRunner` runs the rules reading them, and the
  rules whose cycle or block timer is due (the task sleeps until
  :meth:`~bms.logic.runner.RuleRunner.next_deadline`). A flood of changes is
  evaluated in slices of at most :data:`SLICE` rules, each ending at the engine's turn budget
  (:func:`~bms.engine.turns.slice_deadline`), with the loop free in between.
* **State is image state.** Each rule's state (block state: integrators,
  timers, runtimes; last commands; command count; quality) is the image
  entry ``logic:<rule>``, written only when it changed (a change of only
  its block's bookkeeping at most every 5 s: ``runner.STATE_INTERVAL``). It takes a ``seq``,
  reaches websocket clients and the standby like a point.
* **Outputs go through the command path.** Each command a rule makes is a
  :class:`~bms.engine.sink.CommandRequest` to the engine's
  :class:`~bms.engine.sink.CommandSink` (source ``logic``, the rule's
  priority, the id ``logic:<rule>:<number>``, bound to the epoch the rule ran
  in), recorded off the loop and executed by the executor at most once.
  The executor reports each one's end (:meth:`LogicEngine.command_ended`):
  one that failed, expired or ended unknown (no answer from the device) is
  commanded again (the runner's back-off; an output is a level).
* **Takeover.** The new active node rebuilds its runner from the replicated
  ``logic:*`` entries, so integrators, timers and runtimes continue. Command
  numbers continue too, :data:`TAKEOVER_GAP` further on: the old node may have
  recorded a few commands whose state never reached this node (the state
  travels on the image stream, the command row on the history stream), and
  an id is never to be used twice. A rule without a replicated state (a cold
  start) continues after the highest number the command log holds. Then
  every rule's last commanded values are re-asserted (level outputs; the
  device may have missed the old node's last write) and every rule runs.
* **Configuration.** A new revision rebuilds the runner with the states of
  the rules that stay (a rule whose kind changed starts its block afresh);
  an unchanged rule set is left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from bms.control.models import Command
from bms.engine.config import EngineConfig
from bms.engine.function import EngineFunction
from bms.engine.image import ProcessImage
from bms.engine.role import RoleGate
from bms.engine.sink import CommandRequest, CommandSink, LogEvent
from bms.engine.tasks import run_slices, woken_or_due
from bms.engine.turns import TURN_SLICE_SECONDS, TurnBudget, slice_deadline
from bms.logic import store
from bms.logic.runner import LogicCommand, RuleRunner, RunResult
from bms.logic.spec import RuleSpec

log = logging.getLogger(__name__)

#: rules run per slice: a flood of changes is evaluated in slices, the loop polls and publishes in between
SLICE = 500
#: how far a node that takes over moves each rule's command numbering past the replicated state (see the docstring)
TAKEOVER_GAP = 1000
SOURCE = "logic"
#: the outcomes a rule learns of: succeeded, or not known to be at its device (failed, expired, or unknown: the
#: device did not answer the write; an output is a level, so writing it again is harmless where it did arrive)
ENDED = frozenset({Command.SUCCEEDED, Command.FAILED, Command.EXPIRED, Command.UNKNOWN})


class LogicEngine(EngineFunction):
    """All logic rules of one node (see the module docstring)."""

    task_name = "logic"

    def __init__(
        self,
        image: ProcessImage,
        role: RoleGate,
        sink: CommandSink,
        notify: Callable[[], None],
        log_event: LogEvent,
        turns: TurnBudget | None = None,
    ) -> None:
        super().__init__(image, role, sink, notify, log_event, turns)
        self.specs: tuple[RuleSpec, ...] = ()
        self.runner = RuleRunner(())
        #: the node has adopted the image's states and runs rules; False on a standby
        self.running = False
        self._cursor = image.cursor()
        #: run every rule at the next pass (after taking control or a new configuration), not only the changed
        self._run_all = False
        self.evaluations = 0
        #: rests: runs due with unchanged inputs and at rest, cycles a sleeping block slept through (RunResult.rested)
        self.rested = 0
        self.commands = 0
        self.slices = 0
        #: outputs commanded again because their command was not known to reach the device (failed, expired, unknown)
        self.retries = 0
        #: CPU seconds of the loop's thread spent in passes (for /metrics and bench/logic.py)
        self.cpu_seconds = 0.0

    # ---- configuration ------------------------------------------------------------------------------------------

    @staticmethod
    def entry_names(config: EngineConfig) -> list[str]:
        return [spec.entry for spec in config.rules]

    async def configure(self, config: EngineConfig) -> None:
        specs = tuple(config.rules)
        if specs == self.specs:
            return
        self.specs = specs
        if not self.running:
            return  # a standby builds its runner when it takes control, from the replicated states
        states = self.runner.states()
        fresh = [spec for spec in specs if spec.entry not in states]
        states.update(await self._cold_states(fresh))
        if not self.running:
            return  # control moved while the command log was read; take_control builds the runner
        runner = RuleRunner(specs, states)
        runner.adopt_outcomes(self.runner)
        self.runner = runner
        self._run_all = True
        self._wake.set()
        log.info("logic: %d rule(s) running", len(specs))

    async def _cold_states(self, specs: list[RuleSpec]) -> dict[str, dict[str, Any]]:
        """States for rules the image has none of: a numbering that continues after the command log."""
        if not specs:
            return {}
        positions = await self.sink.run_in_db(store.command_positions, [spec.name for spec in specs])
        return {spec.entry: {"n": positions[spec.name]} for spec in specs if spec.name in positions}

    # ---- control ------------------------------------------------------------------------------------------------

    async def take_control(self) -> None:
        self.running = False
        specs = self.specs
        states: dict[str, dict[str, Any]] = {}
        cold = []
        for spec in specs:
            entry = self.image.points.get(spec.entry)
            value = getattr(entry, "value", None)
            if isinstance(value, Mapping):
                state = dict(value)
                state["n"] = int(state.get("n", 0)) + TAKEOVER_GAP
                states[spec.entry] = state
            else:
                cold.append(spec)
        states.update(await self._cold_states(cold))
        self.runner = RuleRunner(specs, states)
        self._cursor.dirty.clear()
        self.running = True
        if self.role.active:
            self._apply(self.runner.reassert(), datetime.now(UTC))
        self._run_all = True
        self._wake.set()
        log.info("logic: %d rule(s) in control (%d without a replicated state)", len(specs), len(cold))

    def release_control(self) -> None:
        self.running = False

    def command_ended(self, source: str, command_id: str, status: str) -> None:
        """A rule's command ended: one that never reached its device makes its rule command the value again."""
        if source != SOURCE or not self.running or status not in ENDED:
            return
        if self.runner.command_ended(command_id, status == Command.SUCCEEDED, datetime.now(UTC)):
            self.retries += 1
            self._wake.set()

    # ---- the task -----------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            due = self.runner.next_deadline() if self.running and not self._run_all else None
            if self.running and self._run_all:
                self._wake.set()
            await woken_or_due(self._wake, due)
            if not (self.running and self.role.active):
                self._cursor.dirty.clear()
                continue
            await run_slices(self.run_once, lambda: self.running and self.role.active, "logic evaluation", self.turns)

    def run_once(self, now: datetime) -> bool:
        """Run (a slice of) the rules due at ``now``; True if more are due at once (call again after a yield)."""
        began = time.thread_time()
        changed = None if self._run_all else self._cursor.dirty
        self._run_all = False
        deadline = slice_deadline(self.turns, TURN_SLICE_SECONDS)
        result = self.runner.evaluate(now, self.image.points, changed, limit=SLICE, deadline=deadline)
        # what was collected is in the runner's due set now; the entries written below come back here, unread
        self._cursor.dirty.clear()
        self.evaluations += len(result.evaluated)
        self.rested += len(result.rested)
        self.slices += 1
        self._apply(result, now)
        self.cpu_seconds += time.thread_time() - began
        return self.runner.pending

    def _apply(self, result: RunResult, now: datetime) -> None:
        """Write the changed states into the image, then hand the commands to the command path."""
        put = self.image.put
        for entry, state in result.states.items():
            put(entry, state, state["q"], now)
        if result.commands:
            epoch = self.role.epoch
            for command in result.commands:
                self.sink.submit(_request(command, epoch))
            self.commands += len(result.commands)
        if result.states:
            self.notify()

    def stats(self) -> dict[str, Any]:
        return {
            "rules": len(self.specs),
            "running": self.running,
            "evaluations": self.evaluations,
            "rested": self.rested,
            "commands": self.commands,
            "slices": self.slices,
            "retries": self.retries,
            "cpu_seconds": self.cpu_seconds,
        }


def _request(command: LogicCommand, epoch: int) -> CommandRequest:
    return CommandRequest(command.point, command.value, command.priority, command.command_id, SOURCE, epoch)
