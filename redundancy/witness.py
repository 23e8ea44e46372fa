"""The witness: a small third process that tells each node how long ago it last heard the other.

Both nodes dial it (``BMS_WITNESS_ADDRESS``) with the pair's secret and send
it their heartbeats; it answers every period with what it knows of every
node. A standby that finds its partner silent takes over only if the
witness is reachable and has not heard the partner for the timeout either,
so a cut sync link alone (both nodes alive, the witness seeing both) does
not give two active nodes. Run it on a third machine:
``python manage.py witness --port 8899 --nodes main,backup``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bms.engine.tasks import cancel_and_wait
from redundancy.link import Connection, LinkServer

log = logging.getLogger(__name__)


class Witness:
    """Records each node's last heartbeat and broadcasts the ages to every connected node."""

    def __init__(self, host: str, port: int, secret: bytes, nodes: set[str], period: float) -> None:
        self.nodes = nodes
        self.period = period
        self.seen: dict[str, dict[str, Any]] = {}
        self.connections: set[Connection] = set()
        self.server = LinkServer(
            host, port, "witness", secret, nodes.__contains__, self._on_message, self._on_connection
        )
        self._task: asyncio.Task | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        await self.server.start()
        self._task = asyncio.create_task(self._broadcast_loop(), name="witness")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)  # cancelled again until it ends (see LinkDialer.stop)
        await self.server.stop()

    def _on_connection(self, connection: Connection, up: bool) -> None:
        (self.connections.add if up else self.connections.discard)(connection)
        log.info("witness: %s %s", connection.peer, "connected" if up else "disconnected")

    def _on_message(self, connection: Connection, body: dict[str, Any]) -> None:
        if body.get("t") == "hb":
            self.seen[connection.peer] = {"at": time.monotonic(), "role": body.get("role"), "epoch": body.get("e")}

    def view(self, now: float) -> dict[str, dict[str, Any]]:
        return {
            name: {"age": now - seen["at"], "role": seen["role"], "epoch": seen["epoch"]}
            for name, seen in self.seen.items()
        }

    async def _broadcast_loop(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            body = {"t": "witness", "e": 0, "s": 0, "node": "witness", "nodes": self.view(time.monotonic())}
            for connection in list(self.connections):
                try:
                    connection.send_nowait(body)
                except (ConnectionError, OSError):
                    connection.close()
