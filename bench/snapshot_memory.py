"""The web side's memory while many clients take a large snapshot at once: fragmented against whole frames.

Run by hand from the repository root (PostgreSQL and Redis on loopback, found
as for the system tests; ``apt-get install -y libmodbus-dev`` once)::

    flock /tmp/bench.lock .venv/bin/python bench/snapshot_memory.py                 # 100,000 points, 100 clients
    .venv/bin/python bench/snapshot_memory.py --devices 20 --clients 50 --rounds 1  # a smaller, quicker run

Method: ``bench/scale.py``'s field (``--devices`` C Modbus devices of 1,000
points, 10 % of the values changing per 1 s poll) and its template database;
**one node** in the production shape, processes layout (``runengine`` and
``runbms --no-engine``), on a clone of the template. Per round the node runs
twice, once with ``BMS_LIVE_FRAGMENT_BYTES=0`` (**whole**: every message one
frame, the behaviour before ADR 0013's amendment of 2 December 2026: the
baseline) and once with the product's default (**fragmented**), the order
alternating between rounds. Each time, after ``--warmup`` seconds with the
image complete, ``--clients`` websocket clients (compact wire form, one
login) connect at once, read their snapshot and go on reading deltas for
``--hold`` seconds, then close. A thread samples the web process's VmRSS
every 20 ms from before the clients connect until they are gone.

Printed per run: the web process's RSS before the clients, its peak while
they connected, the growth (peak - before), time from the first connect to
the last snapshot, and per round the ratio of the growths (fragmented /
whole; lower is better). The clients read as fast as one Python process
can, about as fast as the node sends: a slower client (a browser on a
busy workstation, a remote site) only makes the difference larger.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import ratio, write_json  # noqa: E402
from bench.scale import DeviceServer, RssSampler, ScaleTemplate, layout  # noqa: E402

HOST = "127.0.0.1"
SAMPLE_SECONDS = 0.02


async def take_snapshots(url: str, origin: str, cookie: str, count: int, hold: float) -> dict[str, Any]:
    """``count`` clients connect at once, each reads its snapshot, then deltas for ``hold`` s; timings in s."""
    import websockets

    loop = asyncio.get_running_loop()
    started = loop.time()
    snapshot_at: list[float] = []
    sizes: list[int] = []
    failures: list[str] = []

    async def client() -> None:
        try:
            async with websockets.connect(
                url,
                origin=origin,
                additional_headers={"Cookie": cookie},
                max_size=None,
                compression=None,
                ping_interval=None,
                open_timeout=60,
                close_timeout=5,
            ) as ws:
                while True:
                    data = await asyncio.wait_for(ws.recv(decode=False), 120)
                    if data.startswith(b'{"type":"snapshot"'):
                        snapshot_at.append(loop.time() - started)
                        sizes.append(len(data))
                        break
                ends = loop.time() + hold
                while (left := ends - loop.time()) > 0:
                    try:
                        await asyncio.wait_for(ws.recv(decode=False), left)
                    except TimeoutError:
                        break
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}"[:200])

    await asyncio.gather(*(client() for _ in range(count)))
    return {
        "snapshots": len(snapshot_at),
        "last_snapshot_s": max(snapshot_at, default=math.nan),
        "snapshot_mb": (sum(sizes) / len(sizes) / 1e6) if sizes else math.nan,
        "failures": failures[:5],
    }


async def wait_for_image(url: str, origin: str, cookie: str, points: int, seconds: float) -> None:
    """Until one client's snapshot holds every point (which also starts the web side's live hub)."""
    import websockets

    deadline = time.monotonic() + seconds
    async with websockets.connect(
        url, origin=origin, additional_headers={"Cookie": cookie}, max_size=None, ping_interval=None, open_timeout=60
    ) as ws:
        while time.monotonic() < deadline:
            message = json.loads(await asyncio.wait_for(ws.recv(), seconds))
            if message.get("type") == "snapshot":
                if len(message.get("names") or message.get("points") or ()) >= points:
                    return
                await asyncio.sleep(1)
                await ws.send('{"type":"resync"}')
    raise RuntimeError(f"no snapshot of {points} points within {seconds} s")


def one_run(template: ScaleTemplate, points: int, fragment_bytes: int, args: argparse.Namespace) -> dict[str, Any]:
    """One node on a clone of the template with ``BMS_LIVE_FRAGMENT_BYTES``; the clients' storm measured."""
    from tests.support.net import free_port, wait_for_port
    from tests.support.pair import admin, base_env
    from tests.support.processes import HttpSession, spawn_node, wait_or_kill

    db_name = f"bench_snapmem_{uuid.uuid4().hex[:8]}"
    template.clone(db_name)
    log_path = ROOT / "var" / "test-logs" / f"{db_name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = base_env(db_name, "main") | {"BMS_LIVE_FRAGMENT_BYTES": str(fragment_bytes)}
    port = free_port()
    processes = spawn_node(port, True, env, log_path)
    try:
        wait_for_port(port, 120)
        base_url = f"http://{HOST}:{port}"
        session = HttpSession(base_url, "demo", "demo")
        url = f"ws://{HOST}:{port}/ws/live/?wire=compact"
        asyncio.run(wait_for_image(url, base_url, session.cookie_header, points, 300))
        time.sleep(args.warmup)
        sampler = RssSampler([processes[1].pid], SAMPLE_SECONDS)
        sampler.start()
        time.sleep(0.5)
        storm = asyncio.run(take_snapshots(url, base_url, session.cookie_header, args.clients, args.hold))
        time.sleep(0.5)
        sampler.stop()
        return {
            "fragment_bytes": fragment_bytes,
            "web_rss_before_mb": sampler.first,
            "web_rss_peak_mb": sampler.peak,
            "web_growth_mb": sampler.peak - sampler.first,
            "log": str(log_path),
            **storm,
        }
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            wait_or_kill(process, "bench node", log_path, seconds=20)
        admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def main(argv: Sequence[str] | None = None) -> int:
    from bench.modbus_poll import build_server

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100, help="C Modbus devices of 1,000 points (default 100)")
    parser.add_argument("--clients", type=int, default=100, help="clients connecting at once (default 100)")
    parser.add_argument("--rounds", type=int, default=2, help="whole + fragmented runs, alternating (default 2)")
    parser.add_argument("--hold", type=float, default=5.0, help="s the clients read deltas after the snapshot")
    parser.add_argument("--warmup", type=float, default=20.0, help="s after the image is complete (default 20)")
    parser.add_argument("--fragment-bytes", type=int, default=128 << 10, help="the fragmented runs' setting")
    args = parser.parse_args(argv)

    started = datetime.now(UTC)
    servers: list[DeviceServer] = []
    template = None
    rounds: list[dict[str, Any]] = []
    try:
        binary = build_server()
        servers = [DeviceServer(binary, 10, 1000) for _ in range(math.ceil(args.devices / 25))]
        devices = layout(args.devices, 1000, 25, [server.port for server in servers])
        points = sum(device.holding + device.inputs for device in devices)
        print(f"loading the template: {points:,} points", flush=True)
        template = ScaleTemplate(devices, 1.0, 2.0)
        for number in range(args.rounds):
            order = [0, args.fragment_bytes] if number % 2 == 0 else [args.fragment_bytes, 0]
            runs = {}
            for setting in order:
                kind = "fragmented" if setting else "whole"
                runs[kind] = one_run(template, points, setting, args)
                run = runs[kind]
                print(
                    f"round {number + 1} {kind:>10}: web RSS {run['web_rss_before_mb']:.0f} -> peak "
                    f"{run['web_rss_peak_mb']:.0f} MB (+{run['web_growth_mb']:.0f}); {run['snapshots']}/"
                    f"{args.clients} snapshots of {run['snapshot_mb']:.1f} MB, the last after "
                    f"{run['last_snapshot_s']:.1f} s; failures {run['failures']}",
                    flush=True,
                )
            runs["growth_ratio"] = ratio(runs["fragmented"]["web_growth_mb"], runs["whole"]["web_growth_mb"])
            print(f"round {number + 1}: growth fragmented / whole = {runs['growth_ratio']:.2f}", flush=True)
            rounds.append(runs)
    finally:
        if template is not None:
            template.drop()
        for server in servers:
            server.stop()
    path = write_json("snapshot-memory", started, {"args": vars(args), "points": points, "rounds": rounds})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
