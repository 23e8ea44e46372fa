"""Delta streaming over the sync link at 10,000 point changes per second: lag and throughput.

Run by hand from the repository root (nothing else needed: no database, no Redis)::

    .venv/bin/python bench/sync_stream.py                     # 10 s at 10,000 changes/s, ~20 s in all
    .venv/bin/python bench/sync_stream.py --rate 20000 --seconds 5
    .venv/bin/python bench/sync_stream.py --help

Method
------
Two pair services in this process, joined by the real sync link on loopback
(``bench/pairlink.py``: product code from the replicator's stream loop to
``ProcessImage.apply_rows``; only the engine around the image is a stand-in).
The active side holds a building-shaped image of ``--points`` points; the
standby first receives it as a snapshot, exactly as after a connect.

Paced run (the lag): a producer task changes random points of the active
image at ``--rate`` changes per second (``ProcessImage.update``, as a
poller does, in steps of about 1 ms), for ``--seconds``. The replicator's own
stream loop (every 5 ms: ``ImageCursor.take_rows`` -> ``PairService.send`` ->
``Connection.send``) carries them; the standby's replicator applies each
delta with ``apply_rows``. Per change: *change lag* = applied on the standby
- ``update`` on the active node (includes the wait for the next 5 ms stream
tick); per frame: *frame lag* = applied - handed to ``Connection.send``. A
point changed twice within one delta travels once with its latest state
(``coalesced``: by design, not a loss). At the end both images must be equal.

Flat-out run (the throughput): the same path without pacing, the producer
changing ``--batch`` points then flushing the stream (the batch a 5 ms tick
holds at the paced rate), for ``--flat-seconds``.

Baselines, in the same run and the same way: a raw asyncio TCP connection
on loopback carrying blobs of the very same sizes as our frames, (a) paced
like our frames were (frame lag of the transport alone) and (b) flat out
(throughput of the transport alone). Results also go to
``bench/results/sync_stream-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
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
from bms.engine.image import GOOD, ProcessImage  # noqa: E402
from redundancy.replication import STREAM_INTERVAL  # noqa: E402

GOAL_P99_MS = 50.0


def next_value(value: Any, rng: random.Random) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return (value + 1) % 5
    return round((value or 0.0) + rng.uniform(0.1, 1.0), 3)


class Probe:
    """Timestamps on both sides: each change's update, each delta handed to the link, each delta applied."""

    def __init__(self, pair: LinkedPair) -> None:
        self.pair = pair
        self.changed_ns: dict[int, int] = {}  # image seq -> update time
        self.sent_ns: dict[int, int] = {}  # delta's seq -> handed to Connection.send
        self.frame_sizes: list[tuple[int, int]] = []  # (sent ns, bytes)
        self.applied: list[tuple[int, int, list[int]]] = []  # (applied ns, delta seq, row seqs)
        self.applied_seq = 0
        self.caught_up = asyncio.Event()
        self.target_seq = -1
        self._install()

    def _install(self) -> None:
        standby = self.pair.standby_image
        apply_rows = standby.apply_rows

        def measured_apply(first: int, seq: int, rows: dict[str, Any]) -> bool:
            ok = apply_rows(first, seq, rows)
            now = time.perf_counter_ns()
            if ok:
                self.applied.append((now, seq, [row[4] for row in rows.values() if row is not None]))
                self.applied_seq = seq
                if seq >= self.target_seq >= 0:
                    self.caught_up.set()
            return ok

        standby.apply_rows = measured_apply
        connection = self.pair.sender.connection()
        send = connection.send

        async def measured_send(body: dict[str, Any]) -> None:
            if body["t"] != "delta":
                await send(body)
                return
            before, now = connection.bytes_out, time.perf_counter_ns()
            self.sent_ns[body["seq"]] = now
            await send(body)
            self.frame_sizes.append((now, connection.bytes_out - before))

        connection.send = measured_send

    def reset(self) -> None:
        self.changed_ns.clear()
        self.sent_ns.clear()
        self.frame_sizes.clear()
        self.applied.clear()

    async def wait_for(self, seq: int) -> None:
        self.target_seq = seq
        self.caught_up.clear()
        if self.applied_seq >= seq:
            return
        async with asyncio.timeout(30):
            await self.caught_up.wait()


async def initial_sync(pair: LinkedPair) -> None:
    loaded = asyncio.get_running_loop().create_future()

    def on_group_send(group: str, message: dict[str, Any]) -> None:
        if message.get("type") == bus.LIVE_RESET and not loaded.done():
            loaded.set_result(None)

    pair.receiver.engine.layer.on_group_send = on_group_send
    await pair.receiver.send("sync_request")
    async with asyncio.timeout(30):
        await loaded
    assert pair.sender.replicator.stream is not None, "the active side did not open its stream"


def change(image: ProcessImage, names: list[str], rng: random.Random, count: int, when: datetime, probe: Probe) -> None:
    points = image.points
    now = time.perf_counter_ns()
    for _ in range(count):
        name = names[rng.randrange(len(names))]
        image.update(name, next_value(points[name].value, rng), GOOD, when)
        probe.changed_ns[image.seq] = now


async def paced(pair: LinkedPair, probe: Probe, rate: float, seconds: float, rng: random.Random) -> dict[str, Any]:
    image = pair.active_image
    names = list(image.points)
    done = 0  # the replicator's own stream loop (started with the pair) carries the changes
    started = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            break
        due = int(elapsed * rate) - done
        if due > 0:
            change(image, names, rng, due, datetime.now(UTC), probe)
            done += due
        await asyncio.sleep(0.001)
    produced_in = time.perf_counter() - started
    await probe.wait_for(image.seq)
    change_lag = [(applied - probe.changed_ns[seq]) / 1e6 for applied, _, seqs in probe.applied for seq in seqs]
    frame_lag = [(applied - probe.sent_ns[seq]) / 1e6 for applied, seq, _ in probe.applied]
    return {
        "changes": done,
        "produced_s": produced_in,
        "rows_applied": len(change_lag),
        "coalesced": done - len(change_lag),
        "frames": len(probe.frame_sizes),
        "bytes": sum(size for _, size in probe.frame_sizes),
        "change_lag_ms": change_lag,
        "frame_lag_ms": frame_lag,
        "frame_schedule": [(sent, size) for sent, size in probe.frame_sizes],
    }


async def flat_out(pair: LinkedPair, probe: Probe, batch: int, seconds: float, rng: random.Random) -> dict[str, Any]:
    image = pair.active_image
    names = list(image.points)
    replicator = pair.sender.replicator
    done = 0
    producing = 0.0  # time spent making the changes (ProcessImage.update and the bench's random values)
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        before = time.perf_counter()
        change(image, names, rng, batch, datetime.now(UTC), probe)
        producing += time.perf_counter() - before
        done += batch
        await replicator.flush_stream()
    await probe.wait_for(image.seq)
    elapsed = time.perf_counter() - started
    return {
        "changes": done,
        "elapsed_s": elapsed,
        "producing_s": producing,
        "frames": len(probe.frame_sizes),
        "bytes": sum(size for _, size in probe.frame_sizes),
        "sizes": [size for _, size in probe.frame_sizes],
    }


async def raw_paced(schedule: list[tuple[int, int]]) -> list[float]:
    """Blobs of our frames' sizes, sent at our frames' moments; lag from write to fully read."""
    pipe = RawPipe()
    await pipe.start()
    lags: list[float] = []
    sent: list[int] = []

    async def read_all() -> None:
        for index, (_, size) in enumerate(schedule):
            await pipe.receive(size)
            lags.append((time.perf_counter_ns() - sent[index]) / 1e6)

    try:
        reader = asyncio.create_task(read_all())
        blobs = {size: random_payload(size) for _, size in schedule}
        origin = schedule[0][0] if schedule else 0
        started = time.perf_counter_ns()
        for moment, size in schedule:
            wait = (moment - origin) - (time.perf_counter_ns() - started)
            if wait > 0:
                await asyncio.sleep(wait / 1e9)
            sent.append(time.perf_counter_ns())
            await pipe.send(blobs[size])
        async with asyncio.timeout(30):
            await reader
    finally:
        await pipe.stop()
    return lags


async def raw_flat(sizes: list[int]) -> float:
    pipe = RawPipe()
    await pipe.start()
    try:
        blobs = {size: random_payload(size) for size in set(sizes)}

        async def read_all() -> float:
            for size in sizes:
                await pipe.receive(size)
            return time.perf_counter()

        reader = asyncio.create_task(read_all())
        started = time.perf_counter()
        for size in sizes:
            await pipe.send(blobs[size])
        return await reader - started
    finally:
        await pipe.stop()


def check_equal(active: ProcessImage, standby: ProcessImage) -> None:
    if active.seq != standby.seq:
        raise AssertionError(f"standby at seq {standby.seq}, active at {active.seq}")
    for name, state in active.points.items():
        copy = standby.points[name]
        if (state.value, state.quality, state.change_time, state.seq) != (
            copy.value,
            copy.quality,
            copy.change_time,
            copy.seq,
        ):
            raise AssertionError(f"point {name} differs on the standby")


async def run(options: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(options.seed)
    pair = LinkedPair(building_image(options.points))
    await pair.start()
    try:
        await initial_sync(pair)
        probe = Probe(pair)
        print(f"paced: {options.rate:,.0f} changes/s for {options.seconds:g} s ...", flush=True)
        await paced(pair, probe, options.rate, min(1.0, options.seconds), rng)  # warm-up
        probe.reset()
        ours = await paced(pair, probe, options.rate, options.seconds, rng)
        check_equal(pair.active_image, pair.standby_image)
        probe.reset()
        print(f"flat out: batches of {options.batch} for {options.flat_seconds:g} s ...", flush=True)
        flat = await flat_out(pair, probe, options.batch, options.flat_seconds, rng)
        check_equal(pair.active_image, pair.standby_image)
    finally:
        await pair.stop()
    print("raw TCP baselines ...", flush=True)
    raw_lag = await raw_paced(ours.pop("frame_schedule"))
    raw_flat_s = await raw_flat(flat["sizes"])
    return {"paced": ours, "raw_paced_lag_ms": raw_lag, "flat": flat, "raw_flat_s": raw_flat_s}


def print_report(result: dict[str, Any], options: argparse.Namespace) -> None:
    ours, flat = result["paced"], result["flat"]
    change, frame, raw = (
        summarize(ours["change_lag_ms"]),
        summarize(ours["frame_lag_ms"]),
        summarize(result["raw_paced_lag_ms"]),
    )
    print()
    print(
        f"delta streaming: {options.points:,}-point image, {ours['changes']:,} changes at {options.rate:,.0f}/s "
        f"over {ours['produced_s']:.1f} s; stream tick {STREAM_INTERVAL * 1e3:g} ms; "
        f"{ours['frames']} frames, {ours['bytes'] / 1e6:.2f} MB ({ours['bytes'] / max(ours['frames'], 1):.0f} B/frame)"
    )
    print(f"applied rows {ours['rows_applied']:,}, coalesced {ours['coalesced']:,} (a point changed twice in a tick)")
    print(f"{'lag (ms)':<40}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'p99/raw':>9}")
    rows = (
        ("change: update -> applied on standby", change),
        ("frame: Connection.send -> applied", frame),
        ("raw loopback TCP, same frames, paced", raw),
    )
    for label, s in rows:
        # The change lag includes the wait for the next stream tick, which the raw pipe has no counterpart for.
        versus = "-" if s is change else f"{ratio(s['p99'], raw['p99']):.1f}"
        print(f"{label:<40}{s['p50']:>8.3f}{s['p90']:>8.3f}{s['p99']:>8.3f}{s['max']:>8.3f}{versus:>9}")
    print()
    megabytes = flat["bytes"] / 1e6
    ours_mbs = megabytes / flat["elapsed_s"]
    raw_mbs = megabytes / result["raw_flat_s"]
    print(
        f"flat out: {flat['changes']:,} changes in batches of {options.batch}, {flat['frames']} frames, "
        f"{megabytes:.1f} MB"
    )
    print(f"{'throughput':<40}{'changes/s':>12}{'MB/s':>9}{'ours/raw':>10}")
    print(
        f"{'sync link (update -> applied)':<40}{flat['changes'] / flat['elapsed_s']:>12,.0f}{ours_mbs:>9.1f}"
        f"{ratio(ours_mbs, raw_mbs):>10.3f}"
    )
    link_s = flat["elapsed_s"] - flat["producing_s"]
    print(
        f"{'  the link path alone (minus producer)':<40}{flat['changes'] / link_s:>12,.0f}{megabytes / link_s:>9.1f}"
        f"{ratio(megabytes / link_s, raw_mbs):>10.3f}"
    )
    print(f"{'raw loopback TCP, same frames':<40}{'':>12}{raw_mbs:>9.1f}{1:>10.3f}")
    print(
        f"headroom: the link path carries {flat['changes'] / flat['elapsed_s'] / options.rate:.1f}x the paced rate "
        "(sender and receiver on one core)"
    )
    verdict = "met" if change["p99"] < GOAL_P99_MS else "NOT met"
    print()
    print(
        f"goal: lag p99 under {GOAL_P99_MS:g} ms at 10,000 changes/s: {verdict} (change lag p99 {change['p99']:.2f} ms)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=10_000, help="points in the image (default 10,000)")
    parser.add_argument("--rate", type=float, default=10_000, help="point changes per second (default 10,000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the paced run (default 10 s)")
    parser.add_argument("--batch", type=int, default=50, help="changes per flush in the flat-out run (default 50)")
    parser.add_argument("--flat-seconds", type=float, default=3.0, help="length of the flat-out run (default 3 s)")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    started = datetime.now(UTC)
    result = asyncio.run(run(options))
    print_report(result, options)
    path = write_json("sync_stream", started, {"options": vars(options), "result": result})
    print(f"results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
