"""Trend inserts against raw binary COPY into the same table, at 100,000 points with 10 % changing per second.

Run by hand from the repository root, with PostgreSQL on loopback (found like the tests:
``BMS_TEST_DATABASE_URL``; the bench makes its own databases ``<name>_bench`` and ``<name>_bench_peer``)::

    flock /tmp/bench.lock .venv/bin/python bench/trend_write.py
    .venv/bin/python bench/trend_write.py --rounds 6 --paced-seconds 20 --backlog 300000
    .venv/bin/python bench/trend_write.py --help

Method
------
1. **Insert throughput** (the issue's figure). Batches of ``--batch`` samples (one second at the target
   rate: the 10,000 of 100,000 points that changed), each at fresh times, alternating in ``--rounds``:

   * *raw*: psycopg binary ``COPY`` of ready-made rows (stamps included) into ``trends_sample``, one
     transaction per batch, on a connection of its own: the database and the driver alone;
   * *ours*: :func:`bms.trends.storage.write_samples`, what the trend writer's thread runs per batch
     (stamps taken from the node's counter, rows built, savepoint, ``COPY``, roll-up marks, commit);
   * *ours, end to end*: the same through :class:`~bms.trends.writer.TrendWriter` (``add`` on the
     loop, hand-over, the writer's thread), flat out: from the first ``add`` until the database holds all.

   Ratio = ours rows/s / raw rows/s, medians of the rounds; the goal is at least 0.5 (the issue measured
   Django's ``bulk_create`` at 0.11 of raw COPY on this kind of machine).
2. **Paced**: the engine-side path for ``--paced-seconds``: a ProcessImage of ``--points`` points, a
   producer changing ``--changing`` of them per second (``update_many`` in 10 steps a second, as pollers
   do), the real :class:`~bms.trends.sampler.TrendSampler` (every point on change + at least every 15 min)
   and writer. Reported: samples stored per second, the most that waited for the database, the loop's
   worst lateness, the sampler's time per second of changes, and whether the spool was needed.
3. **Replication**: a backlog of ``--backlog`` samples carried by the history stream as the pair carries
   it: ``redundancy.history.outgoing`` rounds (500 rows) on the sender's database, msgpack framing, and
   ``redundancy.history.store_rows`` on the receiver's database, each on a thread of its own (like two
   nodes' engine database threads), pipelined without waiting for acknowledgements. Rows/s against the
   10,000 samples/s the stream must carry.

Results also go to ``bench/results/trend_write-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import ratio, write_json  # noqa: E402
from tests.support import services  # noqa: E402

GOAL = 0.5


def with_name(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


def fresh_database(url: str) -> None:
    import psycopg

    name = urlparse(url).path.strip("/")
    with psycopg.connect(with_name(url, "postgres"), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str, *more_urls: str) -> None:
    """Django on ``url`` (test settings); each of ``url`` and ``more_urls`` made afresh and migrated."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "bms.settings.test"
    os.environ["BMS_TEST_DATABASE_URL"] = url
    os.environ.setdefault("BMS_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    for target in (url, *more_urls):
        fresh_database(target)
        settings_dict = connections.settings["default"]
        saved = dict(settings_dict)
        settings_dict["NAME"] = urlparse(target).path.strip("/")
        call_command("migrate", verbosity=0)
        connections.close_all()
        settings_dict.update(saved)


async def until(predicate, step: float) -> None:
    """Poll ``predicate`` every ``step`` seconds until it is true (the writer's counters move on its threads)."""
    while True:
        if predicate():
            return
        await asyncio.sleep(step)


# ---- 1. insert throughput -------------------------------------------------------------------------------------


def batches(points: int, changing: int, start: datetime, seconds: int, seed: int) -> list[list[tuple]]:
    """``seconds`` batches: per second, ``changing`` distinct random points, at times within that second."""
    rng = random.Random(seed)
    out = []
    for second in range(seconds):
        base = start + timedelta(seconds=second)
        chosen = rng.sample(range(1, points + 1), changing)
        step = 1_000_000 // changing
        out.append(
            [
                (point, base + timedelta(microseconds=index * step), round(rng.uniform(0, 100), 2), 0)
                for index, point in enumerate(chosen)
            ]
        )
    return out


def raw_copy(connection, rows: list[tuple]) -> float:
    started = time.perf_counter()
    with connection.transaction(), connection.cursor() as cursor:
        with cursor.copy(
            "COPY trends_sample (point_id, time, value, quality, origin, epoch, origin_seq) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "timestamptz", "float8", "int2", "varchar", "int8", "int8"])
            for row in rows:
                copy.write_row(row)
    return time.perf_counter() - started


def insert_throughput(url: str, args: argparse.Namespace) -> dict[str, Any]:
    import psycopg

    from bms.trends import partitions, storage

    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    storage.upkeep(datetime.now(UTC))
    partitions.ensure("trends_sample", [(base - timedelta(days=1), base + timedelta(days=1))], 7)
    raw_connection = psycopg.connect(url)
    seconds = args.rounds * args.batches_per_round
    ours_data = batches(args.points, args.batch, base, seconds, seed=1)
    raw_data = batches(args.points, args.batch, base + timedelta(hours=1), seconds, seed=2)
    sequence = 10**12
    raw_rows = []
    for batch in raw_data:
        rows = []
        for point, when, value, quality in batch:
            sequence += 1
            rows.append((point, when, value, quality, "raw", 1, sequence))
        raw_rows.append(rows)
    # warm-up (first COPY of a session, plans, caches), not counted
    warm = batches(args.points, args.batch, base + timedelta(hours=2), 2, seed=3)
    storage.write_samples(warm[0])
    raw_copy(raw_connection, [(*row, "raw", 1, 10**13 + i) for i, row in enumerate(warm[1])])
    raw_rates, our_rates = [], []
    for number in range(args.rounds):
        chunk = slice(number * args.batches_per_round, (number + 1) * args.batches_per_round)
        elapsed = sum(raw_copy(raw_connection, rows) for rows in raw_rows[chunk])
        raw_rates.append(args.batch * args.batches_per_round / elapsed)
        started = time.perf_counter()
        for rows in ours_data[chunk]:
            storage.write_samples(rows)
        our_rates.append(args.batch * args.batches_per_round / (time.perf_counter() - started))
        print(f"  round {number + 1}: raw {raw_rates[-1]:,.0f} rows/s, ours {our_rates[-1]:,.0f} rows/s")
    raw_connection.close()
    end_to_end = asyncio.run(writer_flat_out(args, base + timedelta(hours=2, minutes=5)))
    raw_median, ours_median = statistics.median(raw_rates), statistics.median(our_rates)
    return {
        "raw_rows_per_s": raw_rates,
        "ours_rows_per_s": our_rates,
        "raw_median": raw_median,
        "ours_median": ours_median,
        "ratio": ratio(ours_median, raw_median),
        "end_to_end_rows_per_s": end_to_end,
        "end_to_end_ratio": ratio(end_to_end, raw_median),
    }


async def writer_flat_out(args: argparse.Namespace, start: datetime) -> float:
    from bms.trends.spool import Spool
    from bms.trends.writer import TrendWriter

    data = batches(args.points, args.batch, start, args.batches_per_round * 2, seed=4)
    total = sum(len(batch) for batch in data)
    with tempfile.TemporaryDirectory() as spool_dir:
        writer = TrendWriter(Spool(Path(spool_dir), 256 * 1024 * 1024), flush_rows=args.batch, stall_seconds=30)
        writer.start()
        started = time.perf_counter()
        for batch in data:
            for row in batch:
                writer.add(row)
            writer.hand_over()
            await asyncio.sleep(0)
        await until(lambda: writer.written >= total, 0.005)
        elapsed = time.perf_counter() - started
        await writer.stop()
        assert writer.spooled == 0, "the database fell behind far enough to spool"
    return total / elapsed


# ---- 2. paced, engine side -----------------------------------------------------------------------------------


async def paced(args: argparse.Namespace) -> dict[str, Any]:
    from bms.engine.image import GOOD, ProcessImage
    from bms.engine.role import StandaloneRole
    from bms.points.models import TREND_BOTH
    from bms.trends.sampler import TrendSampler
    from bms.trends.spec import TrendSpec
    from bms.trends.spool import Spool
    from bms.trends.writer import TrendWriter

    names = [f"p{index}" for index in range(args.points)]
    image = ProcessImage()
    image.define(names)
    now = datetime.now(UTC)
    image.update_many(names, [0.0] * len(names), [0.0] * len(names), GOOD, now)  # every point read once
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as spool_dir:
        writer = TrendWriter(Spool(Path(spool_dir), 1024 * 1024 * 1024))
        sampler = TrendSampler(image, StandaloneRole(), writer)
        sampler.configure(TrendSpec(name, index + 1, TREND_BOTH, 0.0, 900.0) for index, name in enumerate(names))
        sampler.start()
        sampler.take_control()  # one sample per point: the state at its change time
        initial = sampler.samples
        loop = asyncio.get_running_loop()
        sampling_time = 0.0
        original = sampler.run_once

        def timed(when: datetime) -> None:
            nonlocal sampling_time
            started = time.perf_counter()
            original(when)
            sampling_time += time.perf_counter() - started

        sampler.run_once = timed  # type: ignore[method-assign]
        await until(lambda: not writer.waiting, 0.05)
        written_before = writer.written
        steps = 10
        per_step = args.changing // steps
        late, most_waiting = 0.0, 0
        expected = loop.time()
        started = time.perf_counter()
        for step in range(args.paced_seconds * steps):
            expected += 1 / steps
            await asyncio.sleep(max(0.0, expected - loop.time()))
            late = max(late, loop.time() - expected)
            chosen = rng.sample(names, per_step)
            image.update_many(chosen, [rng.uniform(0, 100) for _ in chosen], [0.0] * per_step, GOOD, datetime.now(UTC))
            sampler.wake()
            if step % steps == 0:
                most_waiting = max(most_waiting, writer.waiting)
        produced_seconds = time.perf_counter() - started
        writer.hand_over()
        await until(lambda: not writer.waiting, 0.02)
        drained = time.perf_counter() - started - produced_seconds
        samples = sampler.samples - initial
        stored = writer.written - written_before
        await sampler.stop()
    return {
        "points": args.points,
        "changes_per_s": args.changing,
        "seconds": produced_seconds,
        "samples": samples,
        "stored": stored,
        "stored_per_s": stored / produced_seconds,
        "most_waiting": most_waiting,
        "after_last_change_s": drained,
        "loop_worst_late_s": late,
        "sampler_ms_per_s": 1000 * sampling_time / produced_seconds,
        "spooled": writer.spooled,
        "lost": writer.lost,
        "kept_up": writer.spooled == 0 and writer.lost == 0 and stored == samples,
    }


# ---- 3. replication ------------------------------------------------------------------------------------------


def replication(url: str, peer_url: str, args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connections
    from django.db.utils import load_backend

    from bms.trends import storage
    from bms.trends.models import Sample
    from redundancy import framing, history

    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1, minutes=30)
    for batch in batches(args.points, args.batch, start, args.backlog // args.batch, seed=6):
        storage.write_samples(batch)
    total = Sample.objects.count()
    with connections["default"].cursor() as cursor:
        cursor.execute("ANALYZE trends_sample")  # as autovacuum would have by now on a node that wrote these rows
    connections.close_all()
    frames: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
    acked: history.Cursors = {}  # what the receiver stored, as its acknowledgements tell the sender
    received: dict[str, Any] = {"rows": 0, "store_s": 0.0, "rounds": 0}
    sender: dict[str, Any] = {"rows": 0, "round_s": []}

    def send() -> None:
        cursors: history.Cursors = history.local_cursors()
        peer = {table: {} for table in cursors}
        while True:
            began = time.perf_counter()
            acknowledged = {table: dict(origins) for table, origins in acked.items()}
            outgoing = history.outgoing(peer, acknowledged, True, limit=args.history_batch)
            sender["round_s"].append(time.perf_counter() - began)
            if not outgoing.batches:
                break
            frames.put(framing.pack({"t": "history", "batches": outgoing.batches}))
            for batch in outgoing.batches:
                top = batch["rows"][-1][batch["fields"].index("origin_seq")]
                peer.setdefault(batch["table"], {})[batch["origin"]] = top
                sender["rows"] += len(batch["rows"])
        frames.put(None)
        connections.close_all()

    def receive() -> None:
        peer_settings = dict(connections.settings["default"], NAME=urlparse(peer_url).path.strip("/"))
        connections["default"] = load_backend(peer_settings["ENGINE"]).DatabaseWrapper(peer_settings, "default")
        while (frame := frames.get()) is not None:
            began = time.perf_counter()
            for batch in framing.unpack(frame)["batches"]:
                top = history.store_rows(batch)
                stored = acked.setdefault(batch["table"], {})
                stored[batch["origin"]] = max(stored.get(batch["origin"], 0), top)
                received["rows"] += len(batch["rows"])
            received["store_s"] += time.perf_counter() - began
            received["rounds"] += 1
        received["held"] = Sample.objects.count()
        connections.close_all()

    threads = [threading.Thread(target=send), threading.Thread(target=receive)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    rounds = sender["round_s"]
    return {
        "history_batch": args.history_batch,
        "backlog": total,
        "rows_sent": sender["rows"],
        "rows_stored": received["held"],
        "seconds": elapsed,
        "rows_per_s": sender["rows"] / elapsed,
        "sender_round_ms_p50": 1000 * statistics.median(rounds),
        "sender_round_ms_max": 1000 * max(rounds),
        "receiver_ms_per_round": 1000 * received["store_s"] / max(received["rounds"], 1),
        "keeps_up_with_10000_per_s": sender["rows"] / elapsed >= 10_000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=with_name(services.DATABASE_URL, "bms_trend_bench"))
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--changing", type=int, default=10_000, help="points changing per second (paced run)")
    parser.add_argument("--batch", type=int, default=10_000, help="samples per batch (one second's changes)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches-per-round", type=int, default=5)
    parser.add_argument("--paced-seconds", type=int, default=20)
    parser.add_argument("--backlog", type=int, default=200_000, help="samples the replication run carries")
    parser.add_argument(
        "--history-batch", type=int, default=2000, help="rows per replication round (the product's BATCH: 2000)"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["insert", "paced", "replication"])
    args = parser.parse_args()
    started_at = datetime.now(UTC)
    peer_url = with_name(args.database_url, urlparse(args.database_url).path.strip("/") + "_peer")
    setup_django(args.database_url, peer_url)
    document: dict[str, Any] = {"arguments": vars(args)}
    if "insert" not in args.skip:
        print(f"insert throughput: batches of {args.batch:,}, {args.rounds} rounds of {args.batches_per_round}")
        result = document["insert"] = insert_throughput(args.database_url, args)
        print(
            f"  raw COPY {result['raw_median']:,.0f} rows/s | ours {result['ours_median']:,.0f} rows/s "
            f"-> ratio {result['ratio']:.2f} (goal >= {GOAL}) {'MET' if result['ratio'] >= GOAL else 'NOT MET'}\n"
            f"  end to end through the writer: {result['end_to_end_rows_per_s']:,.0f} rows/s "
            f"-> ratio {result['end_to_end_ratio']:.2f}"
        )
    if "paced" not in args.skip:
        print(f"paced: {args.points:,} points, {args.changing:,} changing per second, {args.paced_seconds} s")
        result = document["paced"] = asyncio.run(paced(args))
        print(
            f"  stored {result['stored_per_s']:,.0f} samples/s, at most {result['most_waiting']:,} waiting, "
            f"all in {result['after_last_change_s']:.2f} s after the last change; loop worst late "
            f"{1000 * result['loop_worst_late_s']:.1f} ms; sampler {result['sampler_ms_per_s']:.1f} ms per second; "
            f"spooled {result['spooled']}, lost {result['lost']} -> {'kept up' if result['kept_up'] else 'FELL BEHIND'}"
        )
    if "replication" not in args.skip:
        print(
            f"replication: every sample stored so far (+{args.backlog:,}) through outgoing + store_rows, "
            f"{args.history_batch} rows per round"
        )
        result = document["replication"] = replication(args.database_url, peer_url, args)
        print(
            f"  {result['rows_per_s']:,.0f} rows/s ({result['rows_sent']:,} rows in {result['seconds']:.1f} s; "
            f"sender round p50 {result['sender_round_ms_p50']:.1f} ms, receiver {result['receiver_ms_per_round']:.1f} "
            f"ms per round) -> {'keeps up with' if result['keeps_up_with_10000_per_s'] else 'BELOW'} 10,000/s"
        )
    path = write_json("trend_write", started_at, document)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
