"""Alarms on a test pair of real nodes: define them, move the device value, read states and both journals.

What the tests observe comes from where the product keeps it: an alarm's
state from the node's live process image (asked of the node's engine over its
own channel layer, as the web processes ask), transitions from each node's
``alarms_alarmjournal`` table. Definitions go in with ``manage.py
importalarms`` and operator actions with ``bms.alarms.actions.perform``, each
run in the node's own environment, so they take the product's own paths.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer
from pymodbus.client import ModbusTcpClient

from bms.alarms.spec import entry_state
from drivers.modbus import encode_registers
from tests.support.pair import Pair, PairNode
from tests.support.processes import ROOT, wait_until

#: the point the alarm tests move: hr:10, float32, written by no other test of the pair device, read back by nobody
#: but the plant model (it steers ahu1_supply_temp); its demo value is 16.0
POINT, REGISTER = "ahu1_supply_setpoint", 10
NORMAL_VALUE = 16.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
JOURNAL_COLUMNS = (
    "alarm, alarm_seq, transition, state, time, origin, epoch, origin_seq, recovered, username, comment, value"
)


def from_us(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(micros))


# -- the device -----------------------------------------------------------------------------------------------------


def set_device_value(port: int, value: float, register: int = REGISTER) -> float:
    """Write ``value`` (float32) into the simulated device's holding register, as a sensor or a panel would."""
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=5)
    try:
        assert client.connect(), f"the simulated device on port {port} does not answer"
        response = client.write_registers(register, encode_registers(value, "float32"), device_id=1)
        assert not response.isError(), response
    finally:
        client.close()
    return value


# -- definitions ----------------------------------------------------------------------------------------------------


def manage(node: PairNode, *args: str, timeout: float = 120) -> str:
    """``manage.py`` in the node's own environment (its database, channel prefix, node name)."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=node.env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} on {node.name} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def import_alarms(node: PairNode, rows: list[dict[str, Any]]) -> str:
    """Import alarm definitions (one dict per CSV row) on ``node`` with ``manage.py importalarms``."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns)
    writer.writeheader()
    writer.writerows(rows)
    with tempfile.NamedTemporaryFile("w", suffix=".csv", prefix="alarms-", dir=node.log_path.parent) as file:
        file.write(text.getvalue())
        file.flush()
        return manage(node, "importalarms", file.name)


def definitions(node: PairNode) -> set[str]:
    """The names of the alarm definitions in ``node``'s database."""
    return {row["name"] for row in node.query("SELECT name FROM alarms_alarmdefinition")}


# -- the live image -------------------------------------------------------------------------------------------------


async def _ask(node: PairNode, message: dict[str, Any], wait: float) -> dict[str, Any] | None:
    layer = RedisPubSubChannelLayer(hosts=[node.env["REDIS_URL"]], prefix=node.env["BMS_CHANNEL_PREFIX"])
    try:
        reply_to = await layer.new_channel()
        await layer.send(f"{node.env['BMS_CHANNEL_PREFIX']}.engine.{node.name}", {**message, "reply_to": reply_to})
        return await asyncio.wait_for(layer.receive(reply_to), wait)
    except (TimeoutError, OSError):
        return None
    finally:
        await layer.flush()


def image(node: PairNode, wait: float = 3.0) -> dict[str, list[Any]] | None:
    """The node's live process image, ``{name: [value, quality, time_us, changed_us, seq]}`` (None: no answer)."""
    reply = asyncio.run(_ask(node, {"type": "engine.snapshot"}, wait))
    return None if reply is None else reply["points"]


@dataclass(frozen=True, slots=True)
class AlarmEntry:
    """An alarm's entry in a node's image: what consoles show and the replicated state machine (``s``)."""

    value: dict[str, Any]
    seq: int

    @property
    def state(self) -> str:
        return self.value["state"]

    @property
    def machine(self) -> dict[str, Any]:
        found = entry_state(self.value)
        return found[0].to_dict() if found is not None else {}

    @property
    def journal_seq(self) -> int:
        return int(self.machine.get("journal_seq", 0))

    @property
    def pending_since(self) -> datetime | None:
        micros = self.machine.get("pending_since")
        return None if micros is None else from_us(micros)


def alarm_entry(node: PairNode, alarm: str) -> AlarmEntry | None:
    points = image(node)
    row = (points or {}).get(f"alarm:{alarm}")
    if row is None or not isinstance(row[0], dict):
        return None
    return AlarmEntry(row[0], int(row[4]))


def point_value(node: PairNode, point: str = POINT) -> float | None:
    row = (image(node) or {}).get(point)
    return None if row is None or row[0] is None else float(row[0])


def wait_alarm(node: PairNode, alarm: str, timeout: float = 30.0, **wanted: Any) -> AlarmEntry:
    """Wait until ``node``'s image shows ``alarm`` with every wanted attribute of :class:`AlarmEntry`."""
    seen: list[AlarmEntry | None] = [None]

    def check() -> AlarmEntry | None:
        entry = seen[0] = alarm_entry(node, alarm)
        if entry is not None and all(getattr(entry, key) == value for key, value in wanted.items()):
            return entry
        return None

    try:
        return wait_until(check, timeout, 0.1, f"{alarm} on {node.name} with {wanted}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {seen[0]}") from None


def wait_point(node: PairNode, value: float, timeout: float = 30.0, point: str = POINT) -> None:
    """Wait until ``node``'s image holds ``value`` for ``point`` (the active node has read it from the device)."""
    wait_until(lambda: point_value(node, point) == value, timeout, 0.1, f"{point} = {value} on {node.name}")


# -- operator actions -----------------------------------------------------------------------------------------------


def perform(node: PairNode, action: str, alarm: str, user: str = "demo", comment: str = "") -> dict[str, Any]:
    """``bms.alarms.actions.perform`` in ``node``'s environment (``manage.py shell``): it asks that node's engine.

    Returns ``{"done", "unchanged", "refused"}``; raises if the engine refused or did not answer."""
    code = (
        "import json; from bms.alarms.actions import perform; "
        f"result = perform({action!r}, [{alarm!r}], {user!r}, comment={comment!r}, wait_seconds=10); "
        "print('RESULT ' + json.dumps(result.to_dict()))"
    )
    out = manage(node, "shell", "-c", code)
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"perform {action} on {node.name} printed no result:\n{out}")
    return json.loads(lines[-1].removeprefix("RESULT "))


# -- the journals ---------------------------------------------------------------------------------------------------


def journal(node: PairNode, alarm: str | None = None) -> list[dict[str, Any]]:
    """``node``'s journal rows (of ``alarm``), in transition order."""
    where, params = ("WHERE alarm = %s", [alarm]) if alarm else ("", None)
    return node.query(f"SELECT {JOURNAL_COLUMNS} FROM alarms_alarmjournal {where} ORDER BY alarm, alarm_seq", params)


def transitions(node: PairNode, alarm: str) -> list[tuple[int, str]]:
    return [(row["alarm_seq"], row["transition"]) for row in journal(node, alarm)]


def journal_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """What must be equal on both nodes: the transition (alarm, number, kind, source time) and who wrote it."""
    return (row["alarm"], row["alarm_seq"], row["transition"], row["time"], row["origin"], row["origin_seq"])


def wait_journal(node: PairNode, alarm: str, expected: list[tuple[int, str]], timeout: float = 30.0) -> None:
    """Wait until ``node``'s journal of ``alarm`` is exactly ``expected`` as ``[(alarm_seq, transition)]``."""
    try:
        wait_until(lambda: transitions(node, alarm) == expected, timeout, 0.1, f"{alarm} journal on {node.name}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: expected {expected}, have {transitions(node, alarm)}") from None


def wait_journals_identical(pair: Pair, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Wait until both nodes' journals hold the same rows (:func:`journal_key`); return the main's."""

    def same() -> list[dict[str, Any]] | None:
        main, backup = journal(pair.main), journal(pair.backup)
        return main if main and {journal_key(r) for r in main} == {journal_key(r) for r in backup} else None

    try:
        return wait_until(same, timeout, 0.2, "identical alarm journals on both databases")
    except AssertionError as exc:
        main = sorted(journal_key(r) for r in journal(pair.main))
        backup = sorted(journal_key(r) for r in journal(pair.backup))
        raise AssertionError(f"{exc}:\nmain   {main}\nbackup {backup}") from None
