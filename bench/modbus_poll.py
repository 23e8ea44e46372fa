"""Modbus polling throughput: our engine against a raw pymodbus loop, same requests, same server, same run.

Run by hand from the repository root (needs a C compiler and libmodbus:
``apt-get install -y libmodbus-dev``)::

    .venv/bin/python bench/modbus_poll.py                       # 1,000 and 10,000 points, about 40 s
    .venv/bin/python bench/modbus_poll.py --points 10000 --change-stride 10 --profile

Method
------
The server is ``bench/modbus_server.c`` on libmodbus, compiled on first
use into ``var/bench-build/`` (gitignored): one C process, a select loop,
many connections, far faster than any Python client, so what is measured
is the client side. With ``--change-stride N`` it increments every N-th
register of each range it is asked for, after answering, so values change
and the engine's change path is measured too (default 100: 1 % of the
registers change per poll).

The server does not sleep between requests (``--server-busy-poll-us``,
default 2,000: it polls its sockets without blocking until 2 ms have passed
without a request). On loopback in a virtual machine, a request sent to a
server asleep on the other vCPU makes the sender's ``send()`` pay for waking
that vCPU; the slower side leaves the server asleep more often and pays
more, so with a sleeping server the ratio also measured the server's naps
(py-spy, 40,000 points, 10 % change: ``send()`` took about twelve times as
long per request on our side as on raw's). A real device is on another
machine; its wake-up is not the client's CPU. ``--server-busy-poll-us 0``
gives the old behaviour.

N points (``--points``, default 1,000 and 10,000) are spread over
``--devices`` devices (default 10, one TCP connection each), each device a
contiguous run of mixed types (float32, uint16, int16 scaled by 0.1,
float32, uint32) from register 0 of its own map, as real devices are
numbered: up to 65,536 registers per device, so 100,000 points over 10
devices fit. The devices share the one server and its one map, so a read by
one device also changes registers the others read; each answer still sees
the same every N-th registers change. Our side starts measuring after every
device's first full poll cycle (at 100,000 points that first cycle, every
value new, takes about a second) and the warm-up. Both sides poll every
device back to back, all devices concurrently on one asyncio loop:

- **raw**: one ``AsyncModbusTcpClient`` per device looping over the very
  requests our planner makes (``drivers.modbus.plan_reads``) and doing
  nothing with the answers;
- **lean**: the same loop with the driver's own register reads
  (``drivers/modbus_reads.py``, ADR 0022) on each pymodbus client instead of
  its read method: what the engine's transport costs alone;
- **ours**: the engine's hot path, a :class:`bms.engine.poller.DevicePoller`
  per device (driver, planner, decoding, scaling, deadband, process image,
  stale watchdog) on one :class:`bms.engine.image.ProcessImage`, with a task
  that takes a delta every 20 ms as the publisher does. What the
  configuration built is frozen out of the garbage collector's way
  (``gc.freeze()``), as the engine does after loading a configuration.

Each measurement runs ``--duration`` seconds after a warm-up; raw and ours
alternate ``--rounds`` times (raw first in odd rounds, ours first in even
ones) and the figures are the medians over the rounds, the ratio the median
of each round's ours/raw: the machine is shared, so drift and noise between
rounds are large and a pair measured back to back is the fair comparison. Printed: requests
per poll cycle (per device and in all), points/s for both, the ratio
ours/raw (goal: at least 0.8), raw's requests/s, and lean's points/s with
ours/lean: the engine's own work per answer, which the lean reads do not
hide (ours beats raw partly because its reads cost less than pymodbus').
``--profile`` also prints the top of a cProfile of our side. Results go to
``bench/results/modbus_poll-<timestamp>.json`` (ignored by git).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import logging
import os
import platform
import pstats
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pymodbus.client import AsyncModbusTcpClient  # noqa: E402

from bms.engine.config import DeviceConfig, PointConfig  # noqa: E402
from bms.engine.image import ProcessImage  # noqa: E402
from bms.engine.poller import DevicePoller  # noqa: E402
from bms.engine.scaling import Scaling  # noqa: E402
from drivers.base import DeviceSpec, PointSpec  # noqa: E402
from drivers.modbus import REGISTER_TYPES, plan_reads  # noqa: E402
from drivers.modbus_reads import RegisterReads  # noqa: E402

SOURCE = ROOT / "bench" / "modbus_server.c"
BUILD_DIR = ROOT / "var" / "bench-build"
SERVER = BUILD_DIR / "modbus_server"
RESULTS_DIR = ROOT / "bench" / "results"
# (data type, scale): the mix every device repeats
MIX = [("float32", 1.0), ("uint16", 1.0), ("int16", 0.1), ("float32", 1.0), ("uint32", 1.0)]


def build_server() -> Path:
    """Compile the C server if it is missing or older than its source; exit with advice if we cannot."""
    if SERVER.exists() and SERVER.stat().st_mtime >= SOURCE.stat().st_mtime:
        return SERVER
    if (
        not Path("/usr/include/modbus/modbus.h").exists()
        and subprocess.run(["pkg-config", "--exists", "libmodbus"], capture_output=True).returncode
    ):
        sys.exit("libmodbus is not installed: apt-get install -y libmodbus-dev (Debian/Ubuntu), then run again")
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        sys.exit("no C compiler: apt-get install -y build-essential, then run again")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libmodbus"], capture_output=True, text=True)
    extra = flags.stdout.split() if flags.returncode == 0 else ["-I/usr/include/modbus", "-lmodbus"]
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run([compiler, "-O2", "-Wall", "-o", str(SERVER), str(SOURCE), *extra], check=True)
    return SERVER


class Server:
    """The C server as a child process on an ephemeral port."""

    def __init__(self, change_stride: int, busy_poll_us: int) -> None:
        self.process = subprocess.Popen(
            [
                str(build_server()),
                "--port",
                "0",
                "--change-stride",
                str(change_stride),
                "--busy-poll-us",
                str(busy_poll_us),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        match = re.search(r":(\d+)\s*$", line)
        if not match:
            self.stop()
            sys.exit(f"the C server did not start: {line!r}")
        self.port = int(match.group(1))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(5)


@dataclass
class Device:
    """One simulated device's configuration, shared by both sides."""

    config: DeviceConfig

    @property
    def specs(self) -> list[PointSpec]:
        return [point.spec for point in self.config.points]


def make_devices(points: int, devices: int, port: int, max_gap: int) -> list[Device]:
    result = []
    per_device = points // devices
    for d in range(devices):
        name = f"dev{d}"
        configs = []
        offset = 0  # each device has its own register map, as real devices do
        for i in range(per_device):
            data_type, scale = MIX[i % len(MIX)]
            spec = PointSpec(f"{name}.p{i}", f"hr:{offset}", data_type)
            configs.append(PointConfig(spec, Scaling(data_type, scale), 0.0, name))
            offset += REGISTER_TYPES[data_type][1]
        spec = DeviceSpec(name, "127.0.0.1", port, timeout=5.0, options={"max_gap": max_gap})
        result.append(Device(DeviceConfig(spec, "modbus", 1e-6, tuple(configs))))
        if offset > 65536:
            sys.exit(f"{per_device} points per device need {offset} registers, more than one device map holds")
    return result


async def run_raw(devices: list[Device], warmup: float, duration: float, lean: bool = False) -> dict[str, float]:
    """Raw pymodbus: each device's planned requests, back to back, answers discarded; ``lean``: sent with the
    driver's own register reads (drivers/modbus_reads.py) on the pymodbus client instead of its read method."""
    clients = []
    for device in devices:
        client = AsyncModbusTcpClient(
            "127.0.0.1", port=device.config.spec.port, timeout=5, retries=0, reconnect_delay=0
        )
        await client.connect()
        clients.append(client)
    counting = False
    running = True
    cycles = [0] * len(devices)
    requests = [0] * len(devices)

    async def loop(index: int, client: AsyncModbusTcpClient, device: Device) -> None:
        blocks = [
            (block.start, block.count) for block in plan_reads(device.specs, device.config.spec.options["max_gap"])
        ]
        read = RegisterReads(client, 5.0, 0).reader(3) if lean else client.read_holding_registers
        # Ended by a flag, not by cancel: Python 3.11's wait_for (inside pymodbus) can swallow a cancellation.
        while running:
            for start, count in blocks:
                response = await read(start, count=count, device_id=1)
                if response.isError():
                    raise RuntimeError(f"raw read refused: {response}")
            if counting:
                cycles[index] += 1
                requests[index] += len(blocks)

    tasks = [asyncio.create_task(loop(i, c, d)) for i, (c, d) in enumerate(zip(clients, devices, strict=True))]
    await asyncio.sleep(warmup)
    counting = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    counting = running = False
    elapsed = time.perf_counter() - started
    await asyncio.gather(*tasks)
    for client in clients:
        client.close()
    per_device = [len(device.config.points) for device in devices]
    points = sum(c * n for c, n in zip(cycles, per_device, strict=True))
    return {"points_per_s": points / elapsed, "requests_per_s": sum(requests) / elapsed}


async def run_ours(
    devices: list[Device], warmup: float, duration: float, profile: cProfile.Profile | None
) -> dict[str, float]:
    """The engine's hot path: a DevicePoller per device on one process image, deltas taken as the publisher does."""
    image = ProcessImage()
    image.define([point.name for device in devices for point in device.config.points])
    pollers = [DevicePoller(device.config, image, lambda: None, lambda *event: None) for device in devices]
    stop = asyncio.Event()

    async def publish() -> None:
        while not stop.is_set():
            image.take_delta()
            await asyncio.sleep(0.02)

    publisher = asyncio.create_task(publish())
    # As the engine does after loading a configuration (EngineRunner.configure): what it built lives until the next
    # one, so it goes out of the collector's way; otherwise full collections walk every point's spec and state.
    gc.freeze()
    for poller in pollers:
        poller.start()
    # The first answers are applied in full (every value is new), which at 100,000 points takes longer than a
    # warm-up: wait for every device's first full cycle, then warm up.
    deadline = time.perf_counter() + 30
    # (a poller has no event for its first cycle; polling the counter is good enough here)
    while any(poller.cycles == 0 for poller in pollers) and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.sleep(warmup)
    offline = [poller.name for poller in pollers if poller.online is not True]
    if offline:
        raise RuntimeError(f"devices not online after the warm-up: {offline}")
    before = [poller.cycles for poller in pollers]
    if profile:
        profile.enable()
    started = time.perf_counter()
    await asyncio.sleep(duration)
    elapsed = time.perf_counter() - started
    if profile:
        profile.disable()
    after = [poller.cycles for poller in pollers]
    stop.set()
    requests = []
    for poller in pollers:
        await poller.stop()
        # one more full read, alone, to count the requests a poll cycle of this driver sends
        await poller.driver.connect()
        await poller.driver.read(poller.specs)
        requests.append(poller.driver.requests_last_read)
        await poller.driver.close()
    await publisher
    gc.unfreeze()  # this round's objects go with it; the next round (raw or ours) starts from a clean heap
    gc.collect()
    per_device = [len(device.config.points) for device in devices]
    cycles = [b - a for a, b in zip(before, after, strict=True)]
    points = sum(c * n for c, n in zip(cycles, per_device, strict=True))
    return {
        "points_per_s": points / elapsed,
        "requests_per_s": sum(c * r for c, r in zip(cycles, requests, strict=True)) / elapsed,
        "requests_per_cycle": sum(requests),
    }


async def measure(args: argparse.Namespace, server: Server, points: int) -> dict:
    devices = make_devices(points, args.devices, server.port, args.max_gap)
    plans = [plan_reads(device.specs, args.max_gap) for device in devices]
    raw_runs, our_runs, lean_runs = [], [], []
    profile = cProfile.Profile() if args.profile else None
    for round_number in range(args.rounds):
        if round_number % 2 == 0:
            raw_runs.append(await run_raw(devices, args.warmup, args.duration))
            lean_runs.append(await run_raw(devices, args.warmup, args.duration, lean=True))
        our_runs.append(await run_ours(devices, args.warmup, args.duration, profile))
        if round_number % 2 == 1:
            lean_runs.append(await run_raw(devices, args.warmup, args.duration, lean=True))
            raw_runs.append(await run_raw(devices, args.warmup, args.duration))
    if our_runs[-1]["requests_per_cycle"] != sum(len(plan) for plan in plans):
        raise RuntimeError("our driver did not send the planned requests")
    raw = median(run["points_per_s"] for run in raw_runs)
    ours = median(run["points_per_s"] for run in our_runs)
    ratios = [o["points_per_s"] / r["points_per_s"] for r, o in zip(raw_runs, our_runs, strict=True)]
    lean_ratios = [o["points_per_s"] / r["points_per_s"] for r, o in zip(lean_runs, our_runs, strict=True)]
    result = {
        "points": points,
        "devices": args.devices,
        "requests_per_cycle": sum(len(plan) for plan in plans),
        "requests_per_cycle_per_device": sum(len(plan) for plan in plans) / len(plans),
        "raw_points_per_s": raw,
        "ours_points_per_s": ours,
        "ratio": median(ratios),
        "ratios": ratios,
        "lean_points_per_s": median(run["points_per_s"] for run in lean_runs),
        "ratio_to_lean": median(lean_ratios),
        "ratios_to_lean": lean_ratios,
        "raw_requests_per_s": median(run["requests_per_s"] for run in raw_runs),
        "ours_requests_per_s": median(run["requests_per_s"] for run in our_runs),
        "rounds": {"raw": raw_runs, "ours": our_runs, "lean": lean_runs},
    }
    if profile:
        print(f"\n--- profile of our side, {points} points ---")
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile_lines)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", default="1000,10000", help="comma-separated point counts (default 1000,10000)")
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--duration", type=float, default=1.5, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=6, help="raw/ours pairs per point count")
    parser.add_argument("--change-stride", type=int, default=100, help="server changes every N-th register read")
    parser.add_argument("--max-gap", type=int, default=8)
    parser.add_argument(
        "--server-busy-poll-us",
        type=int,
        default=2000,
        help="the server polls without sleeping until this long without a request (0: it sleeps in select at once)",
    )
    parser.add_argument("--profile", action="store_true", help="print a cProfile of our side")
    parser.add_argument("--profile-lines", type=int, default=25)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    started = datetime.now(UTC)
    server = Server(args.change_stride, args.server_busy_poll_us)
    try:
        results = [asyncio.run(measure(args, server, int(n))) for n in args.points.split(",")]
    finally:
        server.stop()
    print(
        f"\nModbus polling, {args.devices} devices, C server (libmodbus), change stride {args.change_stride}, "
        f"busy poll {args.server_busy_poll_us} us, {args.rounds} x {args.duration:g} s per side, medians"
    )
    header = ("points", "req/cycle", "raw pts/s", "ours pts/s", "ratio", "raw req/s", "goal", "lean pts/s", "/lean")
    print("{:>7} {:>10} {:>12} {:>12} {:>6} {:>10} {:>5} {:>12} {:>6}".format(*header))
    for r in results:
        goal = "ok" if r["ratio"] >= 0.8 else "BELOW"
        print(
            f"{r['points']:>7} {r['requests_per_cycle']:>10} {r['raw_points_per_s']:>12,.0f} "
            f"{r['ours_points_per_s']:>12,.0f} {r['ratio']:>6.2f} {r['raw_requests_per_s']:>10,.0f} {goal:>5} "
            f"{r['lean_points_per_s']:>12,.0f} {r['ratio_to_lean']:>6.2f}"
        )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"modbus_poll-{started:%Y%m%dT%H%M%SZ}.json"
    environment = {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()}
    document = {"started": started.isoformat(), "arguments": vars(args), "environment": environment}
    path.write_text(json.dumps({**document, "results": results}, indent=2) + "\n")
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
