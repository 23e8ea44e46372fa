"""A loop on its own thread for the length of a ``with`` block (samplers, loads, probes of the system tests)."""

from __future__ import annotations

import threading
from typing import Self


class Background:
    """Abstract base: subclasses implement :meth:`_run`, looping until ``self._stop`` is set."""

    join_seconds = 30.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.join_seconds)

    def _run(self) -> None:
        raise NotImplementedError
