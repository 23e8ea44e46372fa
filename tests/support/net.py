"""Loopback helpers for tests: free ports and waiting for a listener."""

import socket

from bms.net import wait_for_port

__all__ = ["free_port", "wait_for_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
