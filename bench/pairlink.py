"""Two pair services in one process, joined by the real sync link over loopback TCP (for the link benches).

Everything on the path of the process image is the product's own code:
:class:`redundancy.service.PairService` (``send``, ``envelope``, message
dispatch), :class:`redundancy.replication.Replicator` with its own tasks
(snapshot on ``sync_request``, chunking, the delta stream loop, ``_on_snap``,
``_on_delta``), :class:`redundancy.link.LinkServer` / ``LinkDialer`` with
the handshake, :mod:`redundancy.framing` and :class:`bms.engine.image.ProcessImage`.
Only the engine around the image is a stand-in: no database (the few
``run_in_db`` calls answer constants), no channel layer, no field I/O, no
role loop (the roles are set, not negotiated).

Both services share one asyncio loop and one core, so the sender's and the
receiver's CPU time add up, where two real nodes would run them in parallel
on two machines: a pessimistic arrangement, and the raw-TCP baselines run
the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import string
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bms.settings.embedded")

import django  # noqa: E402

django.setup()

from bms.engine.image import GOOD, ProcessImage  # noqa: E402
from bms.points.models import ConfigRevision  # noqa: E402
from redundancy import configsync, history  # noqa: E402
from redundancy.config import PairConfig  # noqa: E402
from redundancy.link import LinkDialer, LinkServer  # noqa: E402
from redundancy.replication import Replicator  # noqa: E402
from redundancy.roles import Role, RoleMachine, Timing  # noqa: E402
from redundancy.service import PairService  # noqa: E402

# The link's INFO lines (connections up and down, snapshots) would drown the report; warnings still show.
# asyncio logs a cancelled connection handler of a stopped LinkServer as an error on Python 3.11: not ours.
logging.getLogger("redundancy").setLevel(logging.WARNING)
logging.getLogger("asyncio").setLevel(logging.CRITICAL)

HOST = "127.0.0.1"
SECRET = b"bench-secret-0123456789abcdef"
CONFIG_DUMP = {"revision": 1, "devices": [], "points": []}


class FakePublisher:
    def notify(self) -> None:
        pass


class FakeLayer:
    """The channel layer: the replicator tells live clients to resync right after it loaded a snapshot."""

    def __init__(self) -> None:
        self.on_group_send: Callable[[str, dict[str, Any]], None] = lambda group, message: None

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.on_group_send(group, message)


class FakeEngine:
    """What the replicator touches of the engine: the image, the publisher, the layer and ``run_in_db``."""

    def __init__(self, image: ProcessImage) -> None:
        self.image = image
        self.publisher = FakePublisher()
        self.layer = FakeLayer()

    async def run_in_db(self, function: Callable[..., Any], *args: Any) -> Any:
        # == not `is`: ConfigRevision.current is a classmethod, bound anew on every access.
        if function == ConfigRevision.current:
            return CONFIG_DUMP["revision"]
        if function == configsync.dump_config:
            return CONFIG_DUMP
        if function in (configsync.config_hash, configsync.apply_config):
            return configsync.hash_dump(CONFIG_DUMP)
        if function == history.local_cursors:
            return {}
        if function == history.rows_after:
            return [], 0
        if function == history.outgoing:
            return history.Outgoing([], {}, 0)
        raise RuntimeError(f"the bench engine has no database for {function!r}")


def pair_config(node: str, partner: str, partner_port: int) -> PairConfig:
    return PairConfig(
        node=node,
        partner=partner,
        partner_host=HOST,
        partner_port=partner_port,
        partner_url="",
        public_url="",
        sync_host=HOST,
        sync_port=0,
        secret=SECRET,
        preferred=node == "main",
        period=0.1,
        timeout=0.3,
        retries=3,
        startup_allowance=1.0,
        hold_down=0.0,
        failback_auto=True,
        witness_host="",
        witness_port=0,
        activate=True,
        db_sync=False,
        comment="",
        partner_comment="",
    )


def service_for(node: str, partner: str, partner_port: int, image: ProcessImage, role: Role) -> PairService:
    service = PairService(pair_config(node, partner, partner_port))
    service.engine = FakeEngine(image)
    service.replicator = Replicator(service, service.engine)
    timing = Timing(0.3, 1.0, 0.0, 1.0)
    service.machine = RoleMachine(node, node == "main", 1, timing, True, False, time.monotonic())
    service.machine.role = role
    service.role.machine = service.machine
    return service


class LinkedPair:
    """An active sender ("main", dialing) and a standby receiver ("backup", listening), connected."""

    def __init__(self, active_image: ProcessImage, standby_image: ProcessImage | None = None) -> None:
        self.active_image = active_image
        self.standby_image = standby_image or ProcessImage()
        self.receiver: PairService | None = None
        self.sender: PairService | None = None
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        receiver = service_for("backup", "main", 1, self.standby_image, Role.STANDBY)
        receiver.server = LinkServer(
            HOST,
            0,
            "backup",
            SECRET,
            lambda node: node == "main",
            receiver._on_message,
            receiver._on_connection,
            receiver.rejects,
        )
        await receiver.server.start()
        sender = service_for("main", "backup", receiver.server.port, self.active_image, Role.ACTIVE)
        sender.dialer = LinkDialer(
            HOST,
            receiver.server.port,
            0.1,
            "main",
            SECRET,
            lambda node: node == "backup",
            sender._on_message,
            sender._on_connection,
            sender.rejects,
        )
        sender.dialer.start()
        self.receiver, self.sender = receiver, sender
        # The replicator's own tasks: the delta stream loop, the history loop (idle: db_sync is off) and the
        # worker that handles the messages which may wait for a database (sync_request among them).
        self.tasks = [*receiver.replicator.tasks(), *sender.replicator.tasks()]
        deadline = time.monotonic() + 5
        while not (sender.connected and receiver.connected):
            if time.monotonic() > deadline:
                raise RuntimeError("the sync link did not come up on loopback")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for service in (self.sender, self.receiver):
            if service is None:
                continue
            service.replicator._stop_stream()
            for endpoint in (service.dialer, service.server):
                if endpoint is not None:
                    await endpoint.stop()

    def use_standby_image(self, image: ProcessImage) -> None:
        """Give the receiver a new image (a cold standby: every point is created by the snapshot)."""
        self.standby_image = image
        self.receiver.engine.image = image
        self.receiver.replicator.image = image
        self.receiver.replicator.image_synced = False


# --- a building-sized process image -------------------------------------------------------------------------------

KINDS = (
    ("supply_air_temp", float),
    ("return_air_temp", float),
    ("setpoint", float),
    ("damper_pos", float),
    ("fan_run", bool),
    ("alarm", bool),
    ("mode", int),
    ("energy_kwh", float),
)


def point_names(count: int) -> list[str]:
    """Names shaped like a real point list: building, plant item, quantity (about 30 characters)."""
    names = []
    for index in range(count):
        device, kind = divmod(index, len(KINDS))
        names.append(f"b{device // 2000:02d}.ahu{device % 2000:04d}.{KINDS[kind][0]}")
    return names


def sample_value(index: int, rng: random.Random) -> float | bool | int:
    kind = KINDS[index % len(KINDS)][1]
    if kind is bool:
        return rng.random() < 0.5
    if kind is int:
        return rng.randrange(5)
    return round(rng.uniform(-20, 120), 3)


def building_image(count: int, seed: int = 1) -> ProcessImage:
    """An image of ``count`` good points, each with its own change time; source times shared per poll cycle."""
    rng = random.Random(seed)
    image = ProcessImage()
    names = point_names(count)
    image.define(names)
    now = datetime.now(UTC)
    for index, name in enumerate(names):
        when = now - timedelta(seconds=rng.uniform(0, 3600))
        image.update(name, sample_value(index, rng), GOOD, when)
        poll = now - timedelta(milliseconds=(index // len(KINDS)) % 1000)
        image.points[name].source_time = poll
    return image


def random_payload(size: int) -> bytes:
    """Incompressible-looking bytes for the raw-TCP baselines (loopback does not compress, but be fair)."""
    letters = (string.ascii_letters + string.digits).encode()
    chunk = bytes(random.Random(size).choices(letters, k=min(size, 65536)))
    return (chunk * (size // len(chunk) + 1))[:size]


# --- the baseline: raw loopback TCP -------------------------------------------------------------------------------


class RawPipe:
    """A plain asyncio TCP connection on loopback: the writer sends blobs, the reader reads exactly their sizes.

    It does what :class:`redundancy.link.Connection` does with the socket
    (``write`` then ``drain`` per frame; ``readexactly`` on the other side)
    and nothing else: no msgpack, no HMAC, no image.
    """

    def __init__(self) -> None:
        self.server: asyncio.AbstractServer | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None
        self.reader: asyncio.StreamReader | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._accepted = loop.create_future()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._accepted.set_result((reader, writer))

        self.server = await asyncio.start_server(accept, HOST, 0)
        port = self.server.sockets[0].getsockname()[1]
        _, self.writer = await asyncio.open_connection(HOST, port)
        self.reader, self._peer_writer = await self._accepted

    async def stop(self) -> None:
        for writer in (self.writer, self._peer_writer):
            writer.close()
        self.server.close()
        await self.server.wait_closed()

    async def send(self, blob: bytes) -> None:
        self.writer.write(blob)
        await self.writer.drain()

    async def receive(self, size: int) -> bytes:
        return await self.reader.readexactly(size)
