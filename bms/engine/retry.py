"""The back-off of a BMS function's output whose command never reached its device. Pure.

A schedule or a rule wants a level at its output. When a command of theirs
ends failed, expired or unknown (the executor tells them,
:meth:`~bms.engine.function.EngineFunction.command_ended`), they command the
level again: the first time at once, then after a wait doubling up to
:data:`RETRY_MAX`, so a dead device gets a few commands a minute per output
instead of one per cycle, and a device back from a short outage gets the
level within a minute at worst.
"""

from __future__ import annotations

from datetime import timedelta

#: the longest wait before an output whose commands keep failing is commanded again (seconds)
RETRY_MAX = 60.0


def retry_delay(failures: int) -> timedelta:
    """How long an output waits after its ``failures``-th failed command in a row: at once, then 2, 4 ... 60 s."""
    return timedelta(seconds=0.0 if failures <= 1 else min(RETRY_MAX, 2.0 ** (failures - 1)))
