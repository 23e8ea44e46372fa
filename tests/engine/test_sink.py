"""The engine's command sink (bms/engine/sink.py) on the real command path and the test PostgreSQL.

Requests go through the engine's own database thread (``Engine.run_in_db``)
into ``submit_write``. The database outage is real: the database thread's
connection goes through a TCP proxy that the test cuts and restores.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.db import connections

from bms.control.models import Command
from bms.engine.runner import Engine
from bms.engine.sink import CommandRequest, CommandSink
from bms.events.models import Event
from bms.points.models import Device, Point
from tests.support import services
from tests.support.proxy import Proxy
from tests.support.roles import ActiveIn
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def point(transactional_db):
    def create() -> None:
        device = Device.objects.create(name="plc", host="127.0.0.1", port=1502)
        Point.objects.create(device=device, name="sp", address="hr:0", data_type="float32", writable=True, max_value=30)

    await sync_to_async(create)()
    yield "sp"
    await sync_to_async(connections.close_all)()


@pytest.fixture
async def parts(point):
    """A not-started engine (its database thread and role) and a sink on them that records its events."""
    node = Engine(InMemoryChannelLayer(), role=ActiveIn(2))
    events: list[tuple[str, str, str, str]] = []
    woken: list[int] = []
    sink = CommandSink(node.run_in_db, node.role, lambda: woken.append(1), lambda *event: events.append(event))
    try:
        yield node, sink, events, woken
    finally:
        await sink.stop()
        await node.run_in_db(connections.close_all)
        node._db.shutdown(wait=True)


def request(command_id: str = "sched:sch1:20261130T070000:weekly:a:b", value: float = 21.5, epoch: int = 2):
    return CommandRequest("sp", value, 12, command_id, "schedule", epoch)


def rows() -> list[tuple[str, object, int, str, int]]:
    return list(
        Command.objects.order_by("pk").values_list("command_id", "value", "priority", "status", "accepted_epoch")
    )


async def test_the_same_request_twice_is_recorded_once_and_answered_repeat(parts):
    _node, sink, events, woken = parts
    first, second = sink.submit(request()), sink.submit(request())
    await sink.flush()
    created, repeat = first.result(), second.result()
    assert (created.outcome, created.status, created.accepted_epoch) == ("created", "pending", 2)
    assert (repeat.outcome, repeat.status, repeat.accepted_epoch) == ("repeat", "pending", 2)
    assert await sync_to_async(rows)() == [("sched:sch1:20261130T070000:weekly:a:b", 21.5, 12, "pending", 2)]
    assert (sink.created, sink.repeated, sink.refused) == (1, 1, 0) and woken == [1] and not events


async def test_a_request_of_an_epoch_the_node_is_no_longer_active_in_is_dropped(parts):
    _node, sink, _events, woken = parts
    answer = sink.submit(request(epoch=1))
    await sink.flush()
    assert answer.result().outcome == "stale" and sink.stale == 1
    assert await sync_to_async(rows)() == [] and woken == []


async def test_a_refused_request_is_logged_as_an_event_and_the_queue_goes_on(parts, caplog):
    _node, sink, events, _woken = parts
    answers = [
        sink.submit(request("sched:a:1", value=99.0)),  # above the point's max
        sink.submit(CommandRequest("gone", 1.0, 12, "sched:a:2", "schedule", 2)),
        sink.submit(request("sched:a:3")),
    ]
    await sink.flush()
    assert [answer.result().outcome for answer in answers] == ["refused", "refused", "created"]
    assert [(kind, source) for kind, source, _message, _severity in events] == [
        ("command_refused", "sp"),
        ("command_refused", "gone"),
    ]
    assert "above the highest allowed value" in events[0][2] and "no point named" in events[1][2]
    assert sink.refused == 2 and [row[0] for row in await sync_to_async(rows)()] == ["sched:a:3"]


async def test_a_full_queue_drops_its_oldest_request_and_says_so(point):
    node = Engine(InMemoryChannelLayer(), role=ActiveIn(2))
    sink = CommandSink(node.run_in_db, node.role, lambda: None, lambda *event: None, capacity=2)
    try:
        answers = [sink.submit(request(f"sched:c:{index}")) for index in range(3)]
        assert answers[0].result().outcome == "dropped" and sink.dropped == 1 and sink.waiting == 2
        await sink.flush()
        assert [answer.result().outcome for answer in answers[1:]] == ["created", "created"]
    finally:
        await node.run_in_db(connections.close_all)
        node._db.shutdown(wait=True)
    assert [row[0] for row in await sync_to_async(rows)()] == ["sched:c:1", "sched:c:2"]


async def test_a_refusal_reaches_the_event_log_of_a_running_engine(engine):
    answer = engine.sink.submit(CommandRequest("no_such_point", 1.0, 16, "sched:x:1", "schedule", engine.role.epoch))
    assert (await asyncio.wait_for(answer, 10)).outcome == "refused"
    found = await eventually(
        lambda: list(Event.objects.filter(kind="command_refused").values_list("source", "message")), 10, db=True
    )
    assert found[0][0] == "no_such_point" and "sched:x:1" in found[0][1]


async def test_requests_wait_while_the_database_is_away_and_are_recorded_once_when_it_returns(parts):
    node, sink, _events, woken = parts
    proxy = Proxy(services.database_port())

    def through_the_proxy() -> None:
        connection = connections["default"]
        connection.close()
        connection.settings_dict = {**connection.settings_dict, "HOST": "127.0.0.1", "PORT": proxy.port}

    try:
        await node.run_in_db(through_the_proxy)
        sink.start()
        first = sink.submit(request("sched:b:1"))
        await asyncio.wait_for(first, 10)
        proxy.cut()
        waiting = sink.submit(request("sched:b:2"))
        await eventually(lambda: node.db_health.down, 10, "the outage noticed by the sink's own attempt")
        assert not waiting.done() and sink.waiting == 1
        proxy.restore()
        answer = await asyncio.wait_for(waiting, 15)
        assert answer.outcome == "created" and not node.db_health.down
    finally:
        proxy.close()
    assert [row[0] for row in await sync_to_async(rows)()] == ["sched:b:1", "sched:b:2"]
    assert sink.created == 2 and len(woken) == 2


async def test_a_function_command_lives_for_the_function_lifetime_not_the_operators(parts, settings):
    """A burst of rule outputs must not expire unsent after the operators' 5 s (bench/logic.py: thousands did)."""
    settings.BMS_COMMAND_LIFETIME_SECONDS = 5.0
    settings.BMS_FUNCTION_COMMAND_LIFETIME_SECONDS = 240.0
    _node, sink, _events, _woken = parts
    answer = sink.submit(request())
    await sink.flush()
    assert answer.result().outcome == "created"
    lifetime = await sync_to_async(lambda: Command.objects.get().as_dict()["lifetime_seconds"])()
    assert lifetime == 240.0


async def test_a_claim_names_the_function_commands_it_found_expired(parts, settings):
    """The executor tells a function which of its commands expired unsent (a rule then commands its value again)."""
    from bms.engine import store

    settings.BMS_FUNCTION_COMMAND_LIFETIME_SECONDS = 0.2
    node, sink, _events, _woken = parts
    answers = [sink.submit(CommandRequest("sp", 20.0 + n, 12, f"logic:r:{n}", "logic", 2)) for n in (1, 2)]
    await sink.flush()
    assert [answer.result().outcome for answer in answers] == ["created", "created"]
    await asyncio.sleep(0.3)
    batch = await node.run_in_db(store.claim_commands, settings.BMS_NODE_NAME, 2, 10)
    assert batch.commands == [] and sorted(batch.expired) == [("logic", "logic:r:1"), ("logic", "logic:r:2")]
    assert [row[3] for row in await sync_to_async(rows)()] == ["expired", "expired"]
    again = await node.run_in_db(store.claim_commands, settings.BMS_NODE_NAME, 2, 10)
    assert again.expired == []  # told once
