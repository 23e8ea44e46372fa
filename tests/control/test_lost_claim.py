"""A claim that commits while its answer is lost (the database host stops between the two): never stuck, never twice.

Real engine, real database, a real Modbus server that logs every write it stores. The one thing a real part
cannot do on demand is break the connection exactly between the claim's commit and its answer: the executor's
trip runs the real claim (it commits), then raises what the engine raises when the connection broke. Before
this was handled, such a command stayed ``executing`` for ever (found by ``tests/system/test_database_outage.py``
under load: the test saw the row executing, cut the database, and the engine had not yet read the answer).
"""

import asyncio
import struct

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from bms.control.models import Command
from bms.control.services import submit_write
from bms.engine import store
from bms.engine.dbhealth import DatabaseUnavailable
from bms.engine.runner import Engine
from tests.control.test_command_batches import add_device, final, submit_together
from tests.engine.conftest import eventually
from tests.support.raw_modbus import RawModbusServer


def lose_answers_of_claims(engine: Engine, times: int) -> list[list[int]]:
    """The next ``times`` claims that take something commit, and the engine gets an error instead of the rows.

    Returns the command rows each of those claims took (filled as they happen)."""
    lost: list[list[int]] = []
    to_database = engine.commands.run_in_db

    async def losing(func, *args):
        result = await to_database(func, *args)
        if func is store.claim_commands and result.commands and len(lost) < times:
            lost.append([command.pk for command in result.commands])
            raise DatabaseUnavailable("consuming input failed: server closed the connection unexpectedly")
        return result

    engine.commands.run_in_db = losing
    return lost


@pytest.fixture
async def device(plant):
    server = RawModbusServer()
    await server.start()
    await sync_to_async(add_device)("logged", server.port, 2)
    try:
        yield server
    finally:
        await server.stop()


def sent_values(server: RawModbusServer, address: int) -> list[float]:
    return [struct.unpack(">f", struct.pack(">2H", *words))[0] for at, words in server.written if at == address]


async def test_commands_of_a_claim_whose_answer_was_lost_are_claimed_again_and_sent_once(device, layer, caplog):
    engine = Engine(layer, publish_min_interval=0.0, config_check_interval=0.05, command_scan_interval=0.05)
    lost = lose_answers_of_claims(engine, times=2)  # twice in a row: the second claim's own answer is lost too
    await engine.start()
    try:
        await eventually(lambda: len(engine.pollers) == 2, message="both devices polled")
        writes = [("logged_sp0", 11.0 + n, f"lost-{n}", 16) for n in range(3)] + [("logged_sp1", 7.5, "lost-b", 16)]
        pks = await sync_to_async(submit_together)(writes)
        rows = await final(pks)
    finally:
        await engine.stop()
    assert len(lost) == 2 and sorted(lost[0]) == sorted(pks), lost
    assert [rows[pk].status for pk in pks] == [Command.SUCCEEDED] * 4, [(r.status, r.error) for r in rows.values()]
    # The device's own log: each value once, in the order submitted.
    assert sent_values(device, 40) == [11.0, 12.0, 13.0]
    assert sent_values(device, 42) == [7.5]
    # Said by the claim whose answer arrived (the second one released them too, but its answer was lost).
    released = [r.getMessage() for r in caplog.records if "answer to an earlier claim was lost" in r.getMessage()]
    assert len(released) == 1 and str(sorted(pks)) in released[0], released


async def test_a_lost_claim_past_its_lifetime_expires_and_is_not_sent(device, layer):
    engine = Engine(layer, publish_min_interval=0.0, config_check_interval=0.05, command_scan_interval=0.05)
    lost = lose_answers_of_claims(engine, times=1)
    to_database = engine.commands.run_in_db

    async def away_after_the_loss(func, *args):
        # The database stays away until the command's lifetime is over (its next trip waits for that).
        if lost and func is store.claim_commands:
            expires_at = await sync_to_async(Command.objects.values_list("expires_at", flat=True).get)(pk=lost[0][0])
            await asyncio.sleep(max(0.0, (expires_at - timezone.now()).total_seconds()) + 0.05)
        return await to_database(func, *args)

    engine.commands.run_in_db = away_after_the_loss
    await engine.start()
    try:
        await eventually(lambda: len(engine.pollers) == 2, message="both devices polled")
        submission = await sync_to_async(submit_write)(
            user=None, point_name="logged_sp0", value=33.0, command_id="lost-late", source="code", lifetime=1
        )
        pks = [submission.command.pk]
        rows = await final(pks)
    finally:
        await engine.stop()
    assert lost == [pks]
    row = rows[pks[0]]
    assert row.status == Command.EXPIRED and row.observed, (row.status, row.error)
    assert sent_values(device, 40) == []


async def test_a_claim_whose_answer_arrived_is_not_released(device, layer):
    # Only a failed claim puts the executor in doubt; commands it holds (queued at a slow device) are never
    # released, even while a later claim releases lost ones.
    device.delay = 0.3
    engine = Engine(layer, publish_min_interval=0.0, config_check_interval=0.05, command_scan_interval=0.05)
    await engine.start()
    try:
        await eventually(lambda: len(engine.pollers) == 2, message="both devices polled")
        held = await sync_to_async(submit_together)([("logged_sp0", 20.0 + n, f"held-{n}", 16) for n in range(4)])
        await eventually(lambda: len(engine.commands._held()) == 4, message="the four writes held by the executor")
        lost = lose_answers_of_claims(engine, times=1)
        late = await sync_to_async(submit_together)([("logged_sp1", 9.0, "held-late", 16)])
        rows = await final(held + late)
    finally:
        await engine.stop()
    assert lost == [late]
    assert [rows[pk].status for pk in held + late] == [Command.SUCCEEDED] * 5
    assert sent_values(device, 40) == [20.0, 21.0, 22.0, 23.0]
    assert sent_values(device, 42) == [9.0]
