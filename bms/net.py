"""Waiting for a TCP listener on loopback (used by the demo launcher and the tests)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def wait_for_port(
    port: int, timeout: float = 20.0, host: str = "127.0.0.1", alive: Callable[[], bool] | None = None
) -> None:
    """Return once ``host:port`` accepts connections; raise TimeoutError after ``timeout`` seconds.

    ``alive`` is asked between attempts; when it returns False (the process
    that should listen has died) waiting stops with RuntimeError at once.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"the process that should listen on {host}:{port} has exited")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout:.0f} s")
