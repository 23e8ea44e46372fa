"""A role gate for engine tests: an active node in a given epoch (what the pair hands the engine after a takeover)."""

from __future__ import annotations

from bms.engine.role import RoleGate


class ActiveIn(RoleGate):
    """An active node in a given epoch."""

    def __init__(self, epoch: int) -> None:
        self._epoch = epoch

    @property
    def active(self) -> bool:
        return True

    @property
    def epoch(self) -> int:
        return self._epoch
