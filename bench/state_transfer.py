"""State transfer: a full 100,000-point process image from the active node to a cold standby over the sync link.

Run by hand from the repository root (nothing else needed: no database, no Redis)::

    .venv/bin/python bench/state_transfer.py                  # 100,000 points, 7 rounds, ~15 s
    .venv/bin/python bench/state_transfer.py --points 20000 --rounds 20
    .venv/bin/python bench/state_transfer.py --profile        # + cProfile of one round, top functions

Method
------
Two pair services in this process, joined by the real sync link on
loopback (``bench/pairlink.py``: product code from ``PairService.send`` to
``ProcessImage.load_rows``; only the engine around the image is a stand-in).
The active side holds a building-shaped image of ``--points`` good points
(floats, booleans, enums; every point with its own change time). One round:

1. the standby gets a new, empty image (a returning main node after a restart: every point is created);
2. t0; the standby sends ``sync_request`` on the link;
3. the active node's replicator takes ``snapshot_rows()`` and sends it in chunks of 20,000 points
   (msgpack, HMAC-SHA256, counter), exactly as on a failback;
4. the standby's replicator collects the chunks and calls ``load_rows``; right after, it asks live
   clients to resync: t1. transfer time = t1 - t0.

Baseline, in the same run and the same way: a raw asyncio TCP connection on loopback
carrying blobs of the very same sizes as the snapshot frames (``write`` + ``drain`` per frame,
``readexactly`` on the other side), no encoding, no MAC, no image.

Then the same steps without sockets, one by one (snapshot_rows, chunking, seal, open, load_rows),
to show where the time goes. Results also go to ``bench/results/state_transfer-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import ratio, summarize, write_json  # noqa: E402
from bench.pairlink import LinkedPair, RawPipe, building_image, random_payload  # noqa: E402
from bms.engine import bus  # noqa: E402
from bms.engine.image import ProcessImage  # noqa: E402
from redundancy.framing import HEADER, MAC_SIZE, Opener, Sealer  # noqa: E402
from redundancy.replication import SNAPSHOT_CHUNK  # noqa: E402

GOAL_SECONDS = 0.5


async def transfer_round(pair: LinkedPair, sizes: list[int]) -> float:
    """One full state transfer to a cold standby; returns seconds; appends the snapshot frame sizes to ``sizes``."""
    pair.use_standby_image(ProcessImage())
    loaded = asyncio.get_running_loop().create_future()

    def on_group_send(group: str, message: dict[str, Any]) -> None:
        if message.get("type") == bus.LIVE_RESET and not loaded.done():
            loaded.set_result(time.perf_counter())

    pair.receiver.engine.layer.on_group_send = on_group_send
    connection = pair.sender.connection()
    original_send = connection.send

    async def measured_send(body: dict[str, Any]) -> None:
        before = connection.bytes_out
        await original_send(body)
        if body["t"] == "snap":
            sizes.append(connection.bytes_out - before)

    connection.send = measured_send
    try:
        started = time.perf_counter()
        if not await pair.receiver.send("sync_request"):
            raise RuntimeError("the standby could not send its sync request")
        async with asyncio.timeout(60):
            finished = await loaded
    finally:
        del connection.send  # back to the class's method
    return finished - started


def check_copy(active: ProcessImage, standby: ProcessImage) -> None:
    if standby.seq != active.seq or standby.points.keys() != active.points.keys():
        raise AssertionError("the standby's image differs from the active node's (seq or point names)")
    for name, state in active.points.items():
        copy = standby.points[name]
        if (state.value, state.quality, state.source_time, state.change_time, state.seq) != (
            copy.value,
            copy.quality,
            copy.source_time,
            copy.change_time,
            copy.seq,
        ):
            raise AssertionError(f"point {name} differs after the transfer")


async def raw_round(pipe: RawPipe, blobs: list[bytes]) -> float:
    async def read_all() -> float:
        for blob in blobs:
            await pipe.receive(len(blob))
        return time.perf_counter()

    reader = asyncio.create_task(read_all())
    started = time.perf_counter()
    for blob in blobs:
        await pipe.send(blob)
    return await reader - started


def phases(image: ProcessImage) -> dict[str, float]:
    """The steps of a transfer without sockets, in seconds (the replicator's own chunking reproduced)."""
    times: dict[str, float] = {}
    key = b"k" * 32
    sealer, opener = Sealer(key, b"s>c"), Opener(key, b"s>c")

    def timed(name: str, step):
        started = time.perf_counter()
        result = step()
        times[name] = time.perf_counter() - started
        return result

    snapshot = timed("snapshot_rows", image.snapshot_rows)
    names = list(snapshot["points"])

    def chunk() -> list[dict[str, Any]]:
        return [
            {name: snapshot["points"][name] for name in names[start : start + SNAPSHOT_CHUNK]}
            for start in range(0, len(names), SNAPSHOT_CHUNK)
        ]

    chunks = timed("chunking", chunk)
    envelope = {"t": "snap", "e": 1, "s": snapshot["seq"], "node": "main", "seq": snapshot["seq"]}
    frames = timed(
        "seal (msgpack + HMAC)",
        lambda: [sealer.seal({**envelope, "part": i, "parts": len(chunks), "points": c}) for i, c in enumerate(chunks)],
    )
    bodies = timed(
        "open (HMAC + msgpack)",
        lambda: [
            opener.open(frame[: HEADER.size], frame[HEADER.size : -MAC_SIZE], frame[-MAC_SIZE:]) for frame in frames
        ],
    )

    def merge() -> dict[str, Any]:
        rows: dict[str, Any] = {}
        for body in bodies:
            rows.update(body["points"])
        return rows

    rows = timed("merge chunks", merge)
    target = ProcessImage()
    timed("load_rows (cold)", lambda: target.load_rows(snapshot["seq"], rows))
    timed("load_rows (warm)", lambda: target.load_rows(snapshot["seq"], rows))
    return times


async def run(options: argparse.Namespace) -> dict[str, Any]:
    print(f"building an image of {options.points:,} points ...", flush=True)
    image = building_image(options.points)
    pair = LinkedPair(image)
    await pair.start()
    try:
        sizes: list[int] = []
        await transfer_round(pair, sizes)  # warm-up, and the correctness check
        check_copy(image, pair.standby_image)
        frame_sizes = list(sizes)
        ours = []
        for _ in range(options.rounds):
            ours.append(await transfer_round(pair, []))
        profile = None
        if options.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await transfer_round(pair, [])
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            profile = out.getvalue()
    finally:
        await pair.stop()
    blobs = [random_payload(size) for size in frame_sizes]
    pipe = RawPipe()
    await pipe.start()
    try:
        await raw_round(pipe, blobs)
        raw = [await raw_round(pipe, blobs) for _ in range(options.rounds)]
    finally:
        await pipe.stop()
    gc.collect()
    steps = phases(image)
    return {
        "points": options.points,
        "rounds": options.rounds,
        "frames": len(frame_sizes),
        "bytes": sum(frame_sizes),
        "ours_s": ours,
        "raw_s": raw,
        "phases_s": steps,
        "profile": profile,
    }


def print_report(result: dict[str, Any]) -> None:
    ours, raw = summarize(result["ours_s"]), summarize(result["raw_s"])
    megabytes = result["bytes"] / 1e6
    print()
    print(
        f"state transfer: {result['points']:,} points to a cold standby, {result['frames']} frame(s), "
        f"{megabytes:.2f} MB on the wire, {result['rounds']} rounds"
    )
    print(f"{'path':<34}{'p50 ms':>9}{'max ms':>9}{'MB/s (p50)':>12}{'p50/raw':>9}")
    for label, s in (("sync link (snapshot -> load_rows)", ours), ("raw loopback TCP, same bytes", raw)):
        print(
            f"{label:<34}{s['p50'] * 1e3:>9.1f}{s['max'] * 1e3:>9.1f}{megabytes / s['p50']:>12.1f}"
            f"{ratio(s['p50'], raw['p50']):>9.2f}"
        )
    print()
    print("the same steps without sockets (one pass each, ms):")
    total = 0.0
    for name, seconds in result["phases_s"].items():
        if name != "load_rows (warm)":
            total += seconds
        print(f"  {name:<26}{seconds * 1e3:>8.1f}")
    print(f"  {'sum (cold standby)':<26}{total * 1e3:>8.1f}")
    verdict = "met" if ours["p50"] < GOAL_SECONDS and ours["max"] < GOAL_SECONDS else "NOT met"
    print()
    print(
        f"goal: full state transfer of 100,000 points under {GOAL_SECONDS:g} s: {verdict} "
        f"(p50 {ours['p50']:.3f} s, max {ours['max']:.3f} s, at {result['points']:,} points)"
    )
    if result.get("profile"):
        print("\ncProfile of one round (sender and receiver share this process), top functions by own time:")
        print(result["profile"])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100_000, help="points in the image (default 100,000)")
    parser.add_argument("--rounds", type=int, default=7, help="measured transfers (default 7, after one warm-up)")
    parser.add_argument("--profile", action="store_true", help="also profile one round with cProfile")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    started = datetime.now(UTC)
    result = asyncio.run(run(options))
    print_report(result)
    path = write_json("state_transfer", started, {"options": vars(options), "result": result})
    print(f"results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
