"""Loopback helpers for tests: free ports and waiting for a listener."""

import socket

from bms.net import wait_for_port

__all__ = ["free_port", "wait_for_port"]


#: ports this process handed out: a port is only free until someone binds it, and a node is given its web and sync
#: ports before it starts, so two calls could return the same number (seen: a node's web server and its own sync
#: link on one port, "Address already in use")
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on now, never one this process handed out before."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
