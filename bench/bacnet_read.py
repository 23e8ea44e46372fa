"""BACnet polling: our driver and poller against a raw bacpypes3 ReadPropertyMultiple loop on the same device.

The device (the simulated building's bacpypes3 device with ``--points``
extra analog values) runs in a subprocess on loopback, so its own cost is
not charged to either client. In this process, rounds alternate between:

* **raw**: one bacpypes3 application sending the same ReadPropertyMultiple
  requests our driver plans (present value and status flags, the same number
  of objects per request), doing nothing with the answer but decoding it;
* **ours**: the engine's :class:`DevicePoller` with our :class:`BacnetDriver`:
  plan, request, convert, status flags to quality, scale, and update the
  process image (``poll_once`` back to back, no scheduler sleeps).

It prints points/s for both and the ratio (goal: ours >= 0.8 of raw). The
device is a Python server too and often the bottleneck, which pulls both
throughputs together; so it also prints each client's own CPU time per
point (this process only), whose ratio isolates our side's cost.
Run by hand::

    .venv/bin/python bench/bacnet_read.py [--points 500] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bacpypes3.basetypes import PropertyIdentifier  # noqa: E402
from bacpypes3.pdu import Address  # noqa: E402
from bacpypes3.primitivedata import ObjectIdentifier  # noqa: E402
from bacpypes3.vendor import get_vendor_info  # noqa: E402

from bms.engine.config import DeviceConfig, PointConfig  # noqa: E402
from bms.engine.image import ProcessImage  # noqa: E402
from bms.engine.poller import DevicePoller  # noqa: E402
from bms.engine.scaling import Scaling  # noqa: E402
from drivers import bacnet_stack as stack  # noqa: E402
from drivers.base import DeviceSpec, PointSpec  # noqa: E402
from drivers.simulator.bacnet_device import EXTRA_VALUES_FROM, SimulatedBacnetDevice  # noqa: E402

OBJECTS_PER_REQUEST = 32


async def serve_device(points: int) -> None:
    """Subprocess mode: the device alone, its port on stdout."""
    device = SimulatedBacnetDevice("127.0.0.1:0", step_seconds=None, extra_values=points)
    await device.start()
    print(device.port, flush=True)
    await asyncio.Future()


def point_specs(points: int) -> list[PointSpec]:
    return [PointSpec(f"av{i}", f"analog-value:{EXTRA_VALUES_FROM + i}", "float32") for i in range(points)]


async def raw_round(port: int, points: int, seconds: float) -> tuple[float, float, int]:
    """Points/s and client CPU µs per point of a bare bacpypes3 RPM loop, and its requests per cycle."""
    app = await stack.open_application("0.0.0.0:0", stack.DEFAULT_LOCAL_INSTANCE, "bench-raw", request_timeout=2.0)
    address = Address(f"127.0.0.1:{port}")
    vendor = get_vendor_info(0)
    properties = [PropertyIdentifier("present-value"), PropertyIdentifier("status-flags")]
    objects = [ObjectIdentifier(("analog-value", EXTRA_VALUES_FROM + i)) for i in range(points)]
    requests = []
    for start in range(0, points, OBJECTS_PER_REQUEST):
        parameters: list = []
        for object_id in objects[start : start + OBJECTS_PER_REQUEST]:
            parameters.extend([object_id, properties])
        requests.append(parameters)
    try:
        done = 0
        loop = asyncio.get_running_loop()
        started, cpu = loop.time(), time.process_time()
        while loop.time() - started < seconds:
            for parameters in requests:
                results = await app.read_property_multiple(address, parameters, vendor_info=vendor)
                done += len(results) // 2
        return done / (loop.time() - started), (time.process_time() - cpu) * 1e6 / done, len(requests)
    finally:
        stack.close_application(app)


async def our_round(port: int, points: int, seconds: float) -> tuple[float, float, int]:
    """Points/s and client CPU µs per point of the engine's poller with our driver, and its requests per cycle."""
    spec = DeviceSpec("bench", "127.0.0.1", port, timeout=2.0, options={"max_objects_per_request": OBJECTS_PER_REQUEST})
    configs = tuple(PointConfig(p, Scaling(p.data_type), 0.0, "bench") for p in point_specs(points))
    image = ProcessImage()
    image.define([p.name for p in configs])
    poller = DevicePoller(DeviceConfig(spec, "bacnet", 1.0, configs), image, lambda: None, lambda *event: None)
    try:
        cycles = 0
        loop = asyncio.get_running_loop()
        started, cpu = loop.time(), time.process_time()
        while loop.time() - started < seconds:
            await poller.poll_once()
            cycles += 1
        elapsed, cpu_per_point = loop.time() - started, (time.process_time() - cpu) * 1e6 / (cycles * points)
        bad = [name for name, state in image.points.items() if state.quality != "good"]
        if bad:
            raise RuntimeError(f"{len(bad)} point(s) not good after polling, e.g. {bad[:3]}")
        return cycles * points / elapsed, cpu_per_point, poller.driver.requests_last_read
    finally:
        await poller.driver.close()


async def run(port: int, args: argparse.Namespace) -> dict:
    await raw_round(port, args.points, 0.5)  # warm-up both sides (device caches, imports)
    await our_round(port, args.points, 0.5)
    raw, ours, raw_cpu, our_cpu = [], [], [], []
    for _ in range(args.rounds):
        raw_rate, raw_us, raw_requests = await raw_round(port, args.points, args.seconds)
        our_rate, our_us, our_requests = await our_round(port, args.points, args.seconds)
        raw.append(raw_rate)
        ours.append(our_rate)
        raw_cpu.append(raw_us)
        our_cpu.append(our_us)
        print(
            f"  round: raw {raw_rate:6.0f} points/s {raw_us:5.0f} µs CPU/point   "
            f"ours {our_rate:6.0f} points/s {our_us:5.0f} µs CPU/point",
            flush=True,
        )
    summary = {
        "points": args.points,
        "objects_per_request": OBJECTS_PER_REQUEST,
        "raw_points_per_s": statistics.median(raw),
        "ours_points_per_s": statistics.median(ours),
        "raw_cpu_us_per_point": statistics.median(raw_cpu),
        "ours_cpu_us_per_point": statistics.median(our_cpu),
        "raw_requests_per_cycle": raw_requests,
        "ours_requests_per_cycle": our_requests,
        "rounds": {"raw": raw, "ours": ours, "raw_cpu": raw_cpu, "ours_cpu": our_cpu},
    }
    summary["ratio"] = summary["ours_points_per_s"] / summary["raw_points_per_s"]
    summary["cpu_ratio"] = summary["raw_cpu_us_per_point"] / summary["ours_cpu_us_per_point"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=500, help="analog values on the device (default 500)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measured round (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, alternating (default 3)")
    parser.add_argument("--serve-device", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_device:
        asyncio.run(serve_device(args.points))
        return
    device = subprocess.Popen(
        [sys.executable, __file__, "--serve-device", "--points", str(args.points)], stdout=subprocess.PIPE, text=True
    )
    try:
        summary = asyncio.run(run(int(device.stdout.readline()), args))
    finally:
        device.terminate()
        device.wait(5)
    verdict = "met" if summary["ratio"] >= 0.8 else "NOT met"
    print(
        f"BACnet read, {summary['points']} points, {summary['objects_per_request']} objects per request\n"
        f"  raw bacpypes3 RPM loop : {summary['raw_points_per_s']:8.0f} points/s, "
        f"{summary['raw_cpu_us_per_point']:5.0f} µs client CPU/point, "
        f"{summary['raw_requests_per_cycle']} requests/cycle\n"
        f"  ours (driver + poller) : {summary['ours_points_per_s']:8.0f} points/s, "
        f"{summary['ours_cpu_us_per_point']:5.0f} µs client CPU/point, "
        f"{summary['ours_requests_per_cycle']} requests/cycle\n"
        f"  ratio ours/raw         : {summary['ratio']:.2f} points/s (goal >= 0.8: {verdict}); "
        f"{summary['cpu_ratio']:.2f} by client CPU per point"
    )
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results / f"bacnet_read-{stamp}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
