"""A standby's request for a snapshot, against the real database and a real process image.

At 100,000 points a snapshot comes in several parts and a configuration dump takes a standby's database thread
half a minute to apply: the active node sends the configuration with a snapshot only when the partner's differs,
and a standby does not ask again while a snapshot's parts are still arriving (bench/scale.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from bms.engine.image import GOOD, ProcessImage
from redundancy import configsync, framing, replication
from redundancy.replication import Replicator
from redundancy.roles import Role

pytestmark = pytest.mark.django_db(transaction=True)


class Service:
    """The pair service as the replicator sees it, with a link that records what is sent."""

    def __init__(self, role: Role, partner_hash: str = "") -> None:
        self.config = SimpleNamespace(db_sync=True, timeout=0.3, node="main")
        self.machine = SimpleNamespace(role=role, epoch=1)
        self.partner = SimpleNamespace(
            heartbeat={"config_hash": partner_hash},
            last_heard=None,
            view=lambda now: SimpleNamespace(role=Role.ACTIVE, silent_for=0.0),
        )
        self.connected = True
        self.sent: list[dict[str, Any]] = []

    async def send(self, kind: str, **body: Any) -> bool:
        self.sent.append(framing.unpack(framing.pack({"t": kind, **body})))
        return True

    def kinds(self) -> list[str]:
        return [message["t"] for message in self.sent]


async def run_in_db(function, *args):
    def call():
        try:
            return function(*args)
        finally:
            connection.close()

    return await sync_to_async(call)()


def node(service: Service, points: int = 5) -> Replicator:
    image = ProcessImage()
    for n in range(points):
        image.update(f"p{n}", float(n), GOOD, datetime.now(UTC))
    engine = SimpleNamespace(image=image, run_in_db=run_in_db, publisher=SimpleNamespace(notify=lambda: None))
    return Replicator(service, engine)


@pytest.mark.parametrize("same", [True, False], ids=["partner-holds-it", "partner-differs"])
async def test_a_snapshot_carries_the_configuration_only_when_the_partner_does_not_hold_it(same):
    ours = await run_in_db(configsync.config_hash)
    service = Service(Role.ACTIVE, partner_hash=ours if same else "something-else")
    active = node(service)
    active.config_hash = ours
    await active._on_sync_request({"node": "backup"})
    assert service.kinds()[0] == "snap"
    assert ("config" in service.kinds()) is not same, service.kinds()
    active._stop_stream()


async def test_a_standby_does_not_ask_again_while_a_snapshots_parts_arrive(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(replication.time, "monotonic", lambda: clock[0])
    service = Service(Role.SYNCING)
    standby = node(service, points=0)
    standby.config_hash = "known"  # no configuration hash to compute in this test
    await standby.tick()
    assert service.kinds() == ["sync_request"]

    clock[0] += 0.9
    await standby._on_snap({"seq": 10, "part": 0, "parts": 3, "points": {}})
    clock[0] += 0.9  # past the request's patience (1 s), but a part came 0.9 s ago
    await standby.tick()
    assert service.kinds() == ["sync_request"]

    clock[0] += 1.5  # nothing more for longer than the patience: the snapshot is lost, ask again
    await standby.tick()
    assert service.kinds() == ["sync_request", "sync_request"]
