"""A log of every write the simulated device receives, so fault tests can check writes at the device.

``python -m drivers.simulator --write-log FILE`` appends one JSON line per
write request (Modbus function 5, 6, 15 or 16) when the server decodes it::

    {"time": "2025-01-01T12:00:00.123456+00:00", "ts": 1735732800.123456, "fc": 16, "table": "hr",
     "address": 0, "values": [16800, 0], "peer": "127.0.0.1:51234", "pid": 4242}

``pid`` is the process that owns the client's socket (looked up once per
connection in ``/proc`` on Linux; null where that is not possible), so a test
running two BMS nodes against one device can tell whose write it was.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

WRITE_FUNCTIONS = {5: "co", 6: "hr", 15: "co", 16: "hr"}


def _socket_inode(local_port: int, remote_port: int) -> str | None:
    """The inode of the loopback/IPv4 TCP socket whose local port is ``local_port`` and remote ``remote_port``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == local_port and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                return fields[9]
    return None


def owner_pid(peer: tuple[str, int] | None, server_port: int) -> int | None:
    """The pid of the local process holding the client end of a connection (Linux only; None if unknown)."""
    if not peer:
        return None
    inode = _socket_inode(int(peer[1]), server_port)
    if inode is None or inode == "0":
        return None
    target = f"socket:[{inode}]"
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                try:
                    if os.readlink(fd.path) == target:
                        return int(entry.name)
                except OSError:
                    continue
        except OSError:
            continue
    return None


def _values(pdu: Any) -> list[int]:
    if getattr(pdu, "function_code", 0) in (5, 15):
        return [int(bool(bit)) for bit in (pdu.bits or [])]
    return [int(register) for register in (pdu.registers or [])]


class WriteLog:
    """Appends one line per received write request; attach it to a pymodbus server before it accepts clients."""

    def __init__(self, path: str | Path) -> None:
        self.file: IO[str] = Path(path).open("a", buffering=1, encoding="utf-8")

    def attach(self, server: Any) -> None:
        """Wrap the server's per-connection handler factory so every handler reports decoded requests here."""
        create = server.callback_new_connection

        def new_connection() -> Any:
            handler = create()
            traced = handler.trace_pdu
            who: dict[str, Any] = {}

            def trace_pdu(sending: bool, pdu: Any) -> Any:
                if not sending and getattr(pdu, "function_code", 0) in WRITE_FUNCTIONS:
                    self._record(handler, who, pdu)
                return traced(sending, pdu)

            handler.trace_pdu = trace_pdu
            return handler

        server.callback_new_connection = new_connection

    def _record(self, handler: Any, who: dict[str, Any], pdu: Any) -> None:
        now = time.time()
        if not who:
            transport = getattr(handler, "transport", None)
            peer = transport.get_extra_info("peername") if transport is not None else None
            sock = transport.get_extra_info("sockname") if transport is not None else None
            who["peer"] = f"{peer[0]}:{peer[1]}" if peer else None
            who["pid"] = owner_pid(peer, sock[1]) if peer and sock else None
        line = {
            "time": datetime.fromtimestamp(now, UTC).isoformat(),
            "ts": now,
            "fc": pdu.function_code,
            "table": WRITE_FUNCTIONS[pdu.function_code],
            "address": int(pdu.address),
            "values": _values(pdu),
            **who,
        }
        self.file.write(json.dumps(line) + "\n")

    def close(self) -> None:
        self.file.close()
