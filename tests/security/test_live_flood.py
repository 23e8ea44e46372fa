"""A websocket client that loops ``resync`` is limited, warned and closed, and the others do not notice.

Finding (issue 13): 10,000 ``resync`` messages from one client cost the node 21 s of CPU and slowed other
clients' pings to 600 ms. Through a real node (Daphne, production shape, the simulated building); the flooder is a
process of its own (in this one its tight send loop held the GIL and delayed the calm client's pings here).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import pytest

from bms.realtime.consumers import CLOSE_TOO_MANY, SNAPSHOT_BURST
from tests.system.test_live_websocket import connect

pytestmark = pytest.mark.system
FLOOD = 10_000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def first_snapshot(ws) -> None:
    while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "snapshot":
        pass


async def ping_times(ws, count: int, stop: asyncio.Event) -> list[float]:
    """Round trips of pings, one after the other, while the flood goes on (other frames are skipped)."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await ws.send(json.dumps({"type": "ping"}))
        while json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] != "pong":
            pass
        times.append(time.perf_counter() - started)
        if stop.is_set() and len(times) >= 10:
            break
    return times


FLOODER = """
import asyncio, json, sys, websockets

async def main(url, origin, cookie, count):
    async with websockets.connect(url, origin=origin, additional_headers={"Cookie": cookie}) as ws:
        while json.loads(await ws.recv())["type"] != "snapshot":
            pass
        print("ready", flush=True)
        sent = 0
        try:
            for _ in range(count):
                await ws.send('{"type": "resync"}')
                sent += 1
        except websockets.ConnectionClosed:
            pass
        received = []
        try:
            while True:
                received.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
        print(json.dumps({"sent": sent, "received": received, "code": code}), flush=True)

asyncio.run(main(*sys.argv[1:4], int(sys.argv[4])))
"""


async def test_a_resync_loop_is_refused_then_closed_without_hurting_others(node):
    web = node.processes[0].pid
    calm_session, flood_session = node.session(), node.session()
    async with connect(node, calm_session) as calm:
        await first_snapshot(calm)
        baseline = await ping_times(calm, 10, asyncio.Event())
        flooder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            FLOODER,
            *(f"ws://127.0.0.1:{node.port}/ws/live/", node.base_url, flood_session.cookie_header, str(FLOOD)),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert (await asyncio.wait_for(flooder.stdout.readline(), 15)).strip() == b"ready"
            cpu_before = cpu_seconds(web)
            done = asyncio.Event()
            pings = asyncio.ensure_future(ping_times(calm, 200, done))
            result = json.loads(await asyncio.wait_for(flooder.stdout.readline(), 60))
            done.set()
            during = await pings
            cpu_used = cpu_seconds(web) - cpu_before
        finally:
            if flooder.returncode is None:
                flooder.kill()
            await flooder.wait()

    sent, received, code = result["sent"], result["received"], result["code"]
    errors = [message for message in received if message["type"] == "error"]
    snapshots = [message for message in received if message["type"] == "snapshot"]
    assert code == CLOSE_TOO_MANY
    assert errors and errors[0]["code"] == "rate_limited" and errors[-1]["code"] == "rate_limited"
    assert len(snapshots) <= SNAPSHOT_BURST + 1  # the burst, then nothing more however many it asked for
    print(f"flood: {sent} sent, {len(snapshots)} snapshots, {len(errors)} errors, node CPU {cpu_used:.2f} s")
    print(f"pings: baseline max {max(baseline) * 1000:.1f} ms, during the flood max {max(during) * 1000:.1f} ms")
    assert cpu_used < 3.0  # was 21 s
    # The other client was answered all along. Its latency is printed, not judged tightly: on a shared 2-core
    # machine it measures the machine's load as much as the node (about 0.2 s here with the load average at 14,
    # while the node itself used 0.15 s of CPU for the whole flood).
    assert len(during) >= 10 and max(during) < 2.0
