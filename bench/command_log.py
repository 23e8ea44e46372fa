"""The command path against a long command log: planning a write and the executor's periodic look-ups.

Run by hand from the repository root, with PostgreSQL on loopback (found like the tests:
``BMS_TEST_DATABASE_URL``; the bench makes its own database ``bms_command_log_bench``)::

    flock /tmp/bench.lock .venv/bin/python bench/command_log.py
    .venv/bin/python bench/command_log.py --sizes 1000,100000 --repeat 50

Why: a server-kept priority array is derived from the command log (ADR 0016), and nothing deletes commands.
A setpoint a logic rule writes every 10 s has 100,000 commands after 12 days, 3 million after a year. Every
write's plan reads the point's array on the engine's one database thread, and the executor asks for the next
override end twice a second.

Method: one point's log grows to each of ``--sizes`` commands (priorities 16 and 8, a few overrides), the
other 99 points of the table to the same total between them; at each size, ``--repeat`` times each, median:

* **plan**: :func:`bms.engine.store.plan_command` of a claimed write to that point (what the executor's
  database trip does per command);
* **next override end**: :func:`bms.engine.store.next_hold_expiry`;
* **last sent**: whether the point's latest command ended unknown (a takeover asks it per point);
* **history scan** (reference, not the product): the array derived as before 1 December 2026, every
  slot-setting row of the point read;
* **baseline**: ``Command.objects.get(pk=...)``, one row by primary key: a trip to the database and back.

Printed per size: each in ms and as a ratio to the baseline of the same size; then each one's growth from the
smallest size to the largest (goal: plan, next override end and last sent grow by at most 1.5 times over a
thousandfold longer log). Results also go to ``bench/results/command_log-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import growth_verdict, median_seconds, ratio  # noqa: E402
from bench.trend_write import setup_django, with_name  # noqa: E402
from tests.support import services  # noqa: E402

POINT = "zone1_setpoint"  # a demo point on a Modbus device: the server keeps its array
OTHERS = 99
GOAL_GROWTH = 1.5
MEASURED = ("plan", "next override end", "last sent")


def grow(size: int, done: int) -> None:
    """Add commands until the point has ``size`` (the other points as many between them), in SQL."""
    from django.db import connection

    add = size - done
    if add <= 0:
        return
    with connection.cursor() as cursor:
        # point_name: the bench point for the first half of each pair of rows, else one of the others; one row
        # in 10 at priority 8, one in 5,000 an override that ends in the future
        cursor.execute(
            """
            INSERT INTO control_command (command_id, point_name, value, priority, payload_hash, source, username,
                accepted_by, accepted_epoch, expires_at, observed, hold_until, status, error, created_at,
                started_at, finished_at, origin, epoch, origin_seq)
            SELECT 'b' || n, CASE WHEN n %% 2 = 0 THEN %s ELSE 'other_' || (n %% %s) END, to_jsonb(20 + n %% 7),
                CASE WHEN n %% 10 = 1 THEN 8 ELSE 16 END, 'x', 'api', '', 'main', 0, NULL, true,
                CASE WHEN n %% 5000 = 0 THEN now() + (n || ' seconds')::interval END, 'succeeded', '',
                now(), now() - ((%s - n) || ' milliseconds')::interval, now(), 'bench', 0, n
            FROM generate_series(%s, %s) AS n
            """,
            [POINT, OTHERS, 2 * size, 2 * done + 1, 2 * size],
        )
        cursor.execute("ANALYZE control_command")


def history_scan() -> dict[int, Any]:
    """The array as derived before 1 December 2026: every slot-setting row of the point read (a reference)."""
    from bms.control.models import Command

    rows = Command.objects.filter(point_name=POINT, status__in=Command.SETS_SLOT, priority__isnull=False).exclude(
        source=Command.ENGINE
    )
    found = {}
    for priority in sorted(set(rows.order_by().values_list("priority", flat=True))):
        found[priority] = rows.filter(priority=priority).order_by("-accepted_epoch", "-started_at", "-pk").first()
    return found


def measure(repeat: int) -> dict[str, float]:
    from django.utils import timezone

    from bms.control.models import Command
    from bms.engine import store

    Command.objects.filter(command_id="bench-claimed").delete()
    claimed = Command.objects.create(
        command_id="bench-claimed",
        point_name=POINT,
        value=21,
        priority=16,
        payload_hash="x",
        accepted_by="main",
        status=Command.EXECUTING,
        started_at=timezone.now(),
    )
    figures = {
        "baseline": median_seconds(lambda: Command.objects.get(pk=claimed.pk), repeat),
        "plan": median_seconds(lambda: store.plan_command(claimed.pk), repeat),
        "next override end": median_seconds(lambda: store.next_hold_expiry(timezone.now()), repeat),
        "last sent": median_seconds(lambda: store._last_claimed_is_unknown(POINT), repeat),
        "history scan": median_seconds(history_scan, max(3, repeat // 10)),
    }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=with_name(services.DATABASE_URL, "bms_command_log_bench"))
    parser.add_argument("--sizes", default="1000,100000,1000000", help="commands of the measured point")
    parser.add_argument("--repeat", type=int, default=100, help="calls per figure (median)")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    started_at = datetime.now(UTC)
    setup_django(args.database_url)
    from django.core.management import call_command

    call_command("loaddemo", modbus_port=1502, poll_interval=1, verbosity=0)  # points, devices: a real schema
    results: dict[int, dict[str, float]] = {}
    done = 0
    for size in sizes:
        began = time.monotonic()
        grow(size, done)
        done = size
        results[size] = figures = measure(args.repeat)
        base = figures["baseline"]
        shown = ", ".join(f"{name} {s * 1000:.2f} ms ({ratio(s, base):.1f}x)" for name, s in figures.items())
        print(f"{size:>10,} commands on the point (log grown in {time.monotonic() - began:.1f} s): {shown}", flush=True)
    met = growth_verdict("command_log", "commands", sizes, results, MEASURED, GOAL_GROWTH, vars(args), started_at)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
