"""What the engine needs of a BMS function that acts on points (schedules, logic): the abstract base.

A function runs on the engine loop while the node is active. Its state is
in the process image (entries it names, replicated to the standby with the
values), so a node that takes over continues from it. It commands points
only through the :class:`~bms.engine.sink.CommandSink`, with stable command
ids, so a takeover never sends one of its commands twice.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from typing import Any

from bms.engine.config import EngineConfig
from bms.engine.image import ProcessImage
from bms.engine.role import RoleGate
from bms.engine.sink import CommandSink, LogEvent
from bms.engine.tasks import cancel_and_wait
from bms.engine.turns import TurnBudget


class EngineFunction(abc.ABC):
    """Abstract base of a function the engine runs (see the module docstring).

    Built once per engine with the engine's image, role, command sink,
    publisher notification and event log; then ``configure`` on every
    configuration revision, ``start``/``stop`` with the engine,
    ``take_control``/``release_control`` with the role, ``wake`` whenever
    points changed in the image. The base runs one task, :meth:`_run`, named
    :attr:`task_name`, woken through ``self._wake``.
    """

    #: the name of the function's task (in task dumps and logs)
    task_name = "function"

    def __init__(
        self,
        image: ProcessImage,
        role: RoleGate,
        sink: CommandSink,
        notify: Callable[[], None],
        log_event: LogEvent,
        turns: TurnBudget | None = None,
    ) -> None:
        self.image = image
        #: the engine loop's shared turn budget (bms/engine/turns.py), for a function that works in slices
        self.turns = turns
        self.role = role
        self.sink = sink
        self.notify = notify
        self.log_event = log_event
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @staticmethod
    @abc.abstractmethod
    def entry_names(config: EngineConfig) -> list[str]:
        """The image entries this function owns under ``config`` (the active node defines them)."""

    @abc.abstractmethod
    async def configure(self, config: EngineConfig) -> None:
        """Apply a new configuration revision (keeping the state of what did not change)."""

    def start(self) -> None:
        """Start the function's task on the running loop; it acts only while in control."""
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        """Stop the task and wait for it."""
        await cancel_and_wait(self._task)

    @abc.abstractmethod
    async def _run(self) -> None:
        """The function's task: wait on ``self._wake`` (and its timers), act while in control."""

    @abc.abstractmethod
    async def take_control(self) -> None:
        """This node became the one that acts: adopt the replicated state from the image and run."""

    @abc.abstractmethod
    def release_control(self) -> None:
        """This node no longer acts: stop commanding (the state stays in the image)."""

    def command_ended(self, source: str, command_id: str, status: str) -> None:
        """A command of the engine's functions (``source``: schedule or logic) reached ``status`` on this node
        (on the loop, returns at once): a function whose command never reached its device may make it again.
        The base ignores it."""
        return None

    def wake(self) -> None:
        """Points changed in the image: look at them soon (on the loop, returns at once)."""
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        """Counters for /metrics and benches."""
        return {}
