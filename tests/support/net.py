"""Loopback helpers for tests: free ports, waiting for a listener, a port that falls silent."""

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from bms.net import wait_for_port

__all__ = ["bytes_waiting_at", "free_port", "silent", "wait_for_port"]


@contextlib.contextmanager
def silent(port: int) -> Iterator[None]:
    """Packets to ``port`` on loopback are dropped for the block (an iptables rule, removed on leaving).

    What a server whose host vanished without a reset looks like to its clients: no answer, no error. A proxy
    cannot do it (its kernel acknowledges what it drops)."""
    rule = ["INPUT", "-i", "lo", "-p", "tcp", "--dport", str(port), "-j", "DROP"]
    subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-D", *rule], check=True)


#: ports this process handed out: a port is only free until someone binds it, and a node is given its web and sync
#: ports before it starts, so two calls could return the same number (seen: a node's web server and its own sync
#: link on one port, "Address already in use")
_handed_out: set[int] = set()


#: under pytest-xdist, (this worker's number, how many there are): each worker hands out only ports of its own
#: blocks of 256 (block number modulo the workers), so two workers never hand out the same free port (the
#: de-duplication below is per process). Not by the port's parity: Linux gives bind() to port 0 odd ports only.
_WORKER = (
    int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0),
    int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1),
)


def free_port() -> int:
    """A loopback port nobody listens on now, never one this process (nor another xdist worker) handed out."""
    index, workers = _WORKER
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if (port >> 8) % workers == index % workers and port not in _handed_out:
            _handed_out.add(port)
            return port


def bytes_waiting_at(port: int) -> int:
    """Bytes received on loopback TCP connections to ``port`` that the listening process has not read yet.

    From ``/proc/net/tcp`` (the kernel's receive queue of each established socket): what a frozen (SIGSTOPped)
    server has been sent, which the server itself cannot be asked about.
    """
    waiting = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:  # 01: established
            waiting += int(queues.split(":")[1], 16)
    return waiting


def connections_to(port: int) -> dict[int, tuple[int, int]]:
    """Established loopback TCP connections to ``port``: peer port -> (bytes received, ms since data last came).

    From the kernel's TCP info (``ss -ti``), so it works on a frozen server too: how many requests a client has
    sent on each connection, and how long it has been quiet.
    """
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout
    connections: dict[int, tuple[int, int]] = {}
    peer = None
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            peer = int(line.split()[-1].rsplit(":", 1)[1])
        elif peer is not None:
            fields = dict(field.split(":", 1) for field in line.split() if field.count(":") == 1)
            received = int(fields.get("bytes_received", 0))
            # lastrcv counts from the connection's start while nothing came
            connections[peer] = (received, int(fields.get("lastrcv", 0)))
    return connections
