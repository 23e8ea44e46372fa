"""State from a sender with a lower epoch than ours is rejected (a deposed active node cannot overwrite us)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from channels.layers import InMemoryChannelLayer

from bms.engine.runner import Engine
from redundancy import config as pair_config
from redundancy.roles import Decision, Role, RoleMachine, Timing
from redundancy.service import PairService


@pytest.fixture
def standby(settings):
    settings.BMS_PARTNER_ADDRESS = "127.0.0.1:1"
    settings.BMS_SYNC_SECRET = "0123456789abcdef-test"
    settings.BMS_NODE_NAME = "backup"
    service = PairService(pair_config.load())
    engine = Engine(InMemoryChannelLayer(), role=service.role)
    service.attach(engine)
    service.machine = RoleMachine("backup", False, 5, Timing(0.3, 1, 1, 1), True, False, 0.0)
    service.machine.enter(Decision(Role.STANDBY, 5, "test"), 0.0)
    service.role.machine = service.machine
    service.replicator.image_synced = True
    return service


def delta(epoch: int, value: float) -> dict:
    when = datetime.now(UTC)
    return {
        "t": "delta",
        "e": epoch,
        "s": 1,
        "node": "main",
        "from": 0,
        "seq": 1,
        "points": {"p": [value, "good", when, when, 1]},
    }


async def test_a_delta_from_a_lower_epoch_is_rejected_and_counted(standby):
    await standby.replicator.on_message(delta(epoch=4, value=1.0))
    assert "p" not in standby.engine.image.points
    assert standby.replicator.stale_rejected == 1


async def test_a_delta_from_the_current_epoch_is_applied(standby):
    await standby.replicator.on_message(delta(epoch=5, value=2.0))
    assert standby.engine.image.points["p"].value == 2.0 and standby.engine.image.seq == 1
    assert standby.replicator.stale_rejected == 0


async def test_a_node_in_control_never_takes_state_from_its_partner(standby):
    standby.machine.enter(Decision(Role.ACTIVE, 6, "test"), 0.0)
    await standby.replicator.on_message(delta(epoch=9, value=3.0))
    assert "p" not in standby.engine.image.points


async def test_read_times_from_the_current_epoch_move_good_points_and_a_lower_epoch_is_rejected(standby):
    await standby.replicator.on_message(delta(epoch=5, value=2.0))
    later = datetime.now(UTC) + timedelta(seconds=5)
    reads = {"t": "reads", "s": 1, "node": "main", "reads": [[later, ["p", "unknown"]]]}
    await standby.replicator.on_message({**reads, "e": 4})
    assert standby.engine.image.points["p"].source_time < later and standby.replicator.stale_rejected == 1
    await standby.replicator.on_message({**reads, "e": 5})
    assert standby.engine.image.points["p"].source_time == later
    assert standby.engine.image.seq == 1  # no change, no seq
