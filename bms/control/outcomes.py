"""Command outcomes told to the web requests of the same process that wait for them, instead of polled.

An API write waits up to a few seconds for its command's outcome
(:func:`bms.control.services.wait_for_outcome`). It used to re-read the row
every 10-100 ms: with 50 operators writing at once that is several hundred
queries a second, and when the engine runs in the web's process (``runbms``
without ``--web-workers``) that work shares the engine's GIL, so the
commands it waits for went slower (bench/command_load.py, thread layout).

Here the engine's command executor says which rows it has just recorded
(:func:`recorded`, after the transaction committed) and a waiting request
wakes at once and reads its row once. A notice only wakes a waiter: the row
stays the truth, and a waiter still reads it every :data:`FALLBACK_SECONDS`
for outcomes recorded another way (a command expired when claimed, the
engine stopping). A web process without an engine in it (``runbms
--no-engine``, ``--web-workers``) gets no notices (:func:`told_here` is
False) and polls as before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator

#: how often a waiter told by the engine still reads its row (outcomes recorded without a notice)
FALLBACK_SECONDS = 0.5

_lock = threading.Lock()
_waiting: dict[int, list[threading.Event]] = {}
_tellers = 0  # command executors running in this process


def serve(running: bool) -> None:
    """A command executor of this process started (True) or stopped (False) telling outcomes."""
    global _tellers
    with _lock:
        _tellers = max(0, _tellers + (1 if running else -1))


def told_here() -> bool:
    """True if an engine in this process tells outcomes (waiters need not poll quickly)."""
    return _tellers > 0


@contextlib.contextmanager
def watch(pk: int) -> Iterator[threading.Event]:
    """An event set when the row of command ``pk`` has a new outcome (while the block runs)."""
    event = threading.Event()
    with _lock:
        _waiting.setdefault(pk, []).append(event)
    try:
        yield event
    finally:
        with _lock:
            events = _waiting.get(pk, [])
            if event in events:
                events.remove(event)
            if not events:
                _waiting.pop(pk, None)


def recorded(pks: Iterable[int]) -> None:
    """The outcomes of these command rows are committed: wake whoever waits for them."""
    with _lock:
        events = [event for pk in pks for event in _waiting.get(pk, ())]
    for event in events:
        event.set()
