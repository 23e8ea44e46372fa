"""The embedded shape as ``make demo`` runs it: one ``runbms`` process, SQLite, in-memory channel layer.

The node runs on its own thread and loop; its live messages reach the web
loop's hub through the layer bridge's local sink (ADR 0013). Checked with a
real process, real websocket clients in both wire forms, and SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets

from tests.support import databases
from tests.support.net import free_port, wait_for_port
from tests.support.processes import ROOT, HttpSession
from tests.system.test_live_websocket import recv, write_device_register

pytestmark = pytest.mark.system


@pytest.fixture
def embedded_node(simulator, tmp_path: Path):
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bms.settings.embedded",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bms.sqlite3'}",
        "BMS_NODE_NAME": "embedded",
    }
    manage = [sys.executable, "manage.py"]
    databases.load_demo(env, simulator.port, migrate=True)  # migrate and loaddemo --demo-user, in one process
    log_path = tmp_path / "node.log"
    process = subprocess.Popen(
        [*manage, "runbms", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, 30)
        yield process, f"http://127.0.0.1:{port}", log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _connect(base_url: str, session: HttpSession, wire: str = "keyed"):
    url = base_url.replace("http", "ws") + f"/ws/live/?wire={wire}"
    return websockets.connect(url, origin=base_url, additional_headers={"Cookie": session.cookie_header})


async def test_both_wire_forms_stream_from_the_engine_thread_and_sigterm_ends_it_quickly(embedded_node, simulator):
    process, base_url, log_path = embedded_node
    session = await asyncio.to_thread(HttpSession, base_url, "demo", "demo")
    async with _connect(base_url, session) as keyed, _connect(base_url, session, "compact") as compact:
        first = await recv(keyed)
        snapshot = await recv(compact)
        assert first["type"] == snapshot["type"] == "snapshot"
        names = snapshot["names"]
        assert set(names) == set(first["points"]) and names == sorted(names)
        index = names.index("zone2_setpoint")
        keyed_seq, compact_seq = first["seq"], snapshot["seq"]

        await write_device_register(simulator.port, 2, 23.75)  # zone2_setpoint at hr:2

        async def until_keyed() -> dict:
            nonlocal keyed_seq
            while True:
                message = await recv(keyed, 10)
                assert message["type"] == "delta" and message["from"] == keyed_seq, message
                keyed_seq = message["seq"]
                state = message["points"].get("zone2_setpoint")
                if state and state["value"] == 23.75:
                    return state

        async def until_compact() -> list:
            nonlocal compact_seq
            while True:
                message = await recv(compact, 10)
                assert message["type"] == "delta" and message["from"] == compact_seq, message
                compact_seq = message["seq"]
                for row in message["points"]:
                    if row[0] == index and row[1] == 23.75:
                        return row

        state, row = await asyncio.gather(until_keyed(), until_compact())
        assert state["quality"] == row[2] == "good"
        # the same instant in both forms: ISO microseconds, epoch milliseconds
        changed = state["changed"]
        assert abs(_epoch_ms(changed) - row[4]) < 1

        health = json.loads(await asyncio.to_thread(_get, base_url + "/healthz"))
        assert health["live"]["clients"] == health["live"]["direct_clients"] == 2

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 10)
        stopped_after = time.monotonic() - started
    print(f"embedded runbms exited {stopped_after:.2f} s after SIGTERM with 2 clients connected")
    assert stopped_after < 2.0
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]


def _epoch_ms(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp() * 1000


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()
