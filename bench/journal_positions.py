"""What a cold start or a takeover reads from a long alarm journal: each alarm's last numbered row.

Run by hand from the repository root, with PostgreSQL on loopback (found like the tests:
``BMS_TEST_DATABASE_URL``; the bench makes its own database ``bms_journal_positions_bench``)::

    flock /tmp/bench.lock .venv/bin/python bench/journal_positions.py
    .venv/bin/python bench/journal_positions.py --alarms 2000 --sizes 20000,200000 --repeat 5

Why: when a node takes control (a takeover, a failback, a cold start) the alarm engine asks the journal for each
alarm's highest transition number (:func:`bms.alarms.store.journal_positions`) and, for alarms without a state
in the image, its last row (:func:`bms.alarms.store.last_journal_rows`), on the engine's database thread. Nothing
deletes journal rows: 20,000 alarms that change state a few times a day make millions of rows in a year.

Method: ``--alarms`` (20,000) alarms; the journal grows to each of ``--sizes`` rows (spread evenly over the alarms,
numbered 1, 2, ... per alarm, one row in 10 unnumbered); at each size, ``--repeat`` times each, median:

* **positions** and **last rows**: the two functions for every alarm, as a takeover calls them;
* **grouped (reference, not the product)**: the query both used before 1 December 2026, ``Max(alarm_seq)`` over
  ``alarm IN (...)`` grouped by alarm, then the rows of those numbers: it reads every row of the alarms;
* **baseline**: the primary keys of the alarms' first numbered rows (``alarm_seq = 1``) by the same index, one
  probe each: the least a per-alarm look-up can cost.

Printed per size: each in ms and as a ratio to the baseline of the same size; then each one's growth from the
smallest size to the largest (goal: positions and last rows grow by at most 1.5 times over a hundredfold longer
journal). Results also go to ``bench/results/journal_positions-<timestamp>.json``.
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

GOAL_GROWTH = 1.5
MEASURED = ("positions", "last rows")


def grow(alarms: int, size: int, done: int) -> None:
    """Add journal rows in SQL until there are ``size``: row n belongs to alarm n mod ``alarms``."""
    from django.db import connection

    if size <= done:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO alarms_alarmjournal (time, alarm, point_name, transition, state, value, priority,
                alarm_class, area, message, username, comment, count, alarm_seq, recovered, recorded_at,
                origin, epoch, origin_seq)
            SELECT now() - ((%s - n) || ' seconds')::interval, 'alarm' || (n %% %s) || '.high',
                'point' || (n %% %s), 'raised', 'active_unacked', to_jsonb(30), 300, 'high', '', '', '', '', 0,
                CASE WHEN n %% 10 = 9 THEN 0 ELSE n / %s + 1 END, false, now(), 'bench', 0, n
            FROM generate_series(%s, %s) AS n
            """,
            [size, alarms, alarms, alarms, done, size - 1],
        )
        cursor.execute("ANALYZE alarms_alarmjournal")


def grouped(names: list[str]) -> dict[str, Any]:
    """The look-up as it was before 1 December 2026 (a reference): every row of the alarms grouped."""
    from django.db.models import Max

    from bms.alarms.models import AlarmJournal

    tops = dict(
        AlarmJournal.objects.filter(alarm__in=names, alarm_seq__gt=0)
        .values("alarm")
        .annotate(top=Max("alarm_seq"))
        .values_list("alarm", "top")
    )
    rows = AlarmJournal.objects.filter(alarm__in=list(tops), alarm_seq__in=set(tops.values()))
    return {row.alarm: row for row in rows if tops.get(row.alarm) == row.alarm_seq}


def first_rows(names: list[str]) -> list[int]:
    from bms.alarms.models import AlarmJournal

    return list(AlarmJournal.objects.filter(alarm__in=names, alarm_seq=1).values_list("pk", flat=True))


def measure(names: list[str], repeat: int) -> dict[str, float]:
    from bms.alarms import store

    found = store.journal_positions(names)
    assert found == {name: row.alarm_seq for name, row in grouped(names).items()}, "the two look-ups disagree"
    return {
        "baseline": median_seconds(lambda: first_rows(names), repeat),
        "positions": median_seconds(lambda: store.journal_positions(names), repeat),
        "last rows": median_seconds(lambda: store.last_journal_rows(names), repeat),
        "grouped": median_seconds(lambda: grouped(names), repeat),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=with_name(services.DATABASE_URL, "bms_journal_positions_bench"))
    parser.add_argument("--alarms", type=int, default=20000)
    parser.add_argument("--sizes", default="20000,200000,2000000", help="journal rows in all")
    parser.add_argument("--repeat", type=int, default=7, help="calls per figure (median)")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    started_at = datetime.now(UTC)
    setup_django(args.database_url)
    names = [f"alarm{n}.high" for n in range(args.alarms)]
    results: dict[int, dict[str, float]] = {}
    done = 0
    for size in sizes:
        began = time.monotonic()
        grow(args.alarms, size, done)
        done = size
        results[size] = figures = measure(names, args.repeat)
        base = figures["baseline"]
        shown = ", ".join(f"{name} {s * 1000:.1f} ms ({ratio(s, base):.1f}x)" for name, s in figures.items())
        print(f"{size:>10,} journal rows (grown in {time.monotonic() - began:.1f} s): {shown}", flush=True)
    met = growth_verdict(
        "journal_positions",
        f"rows ({args.alarms:,} alarms)",
        sizes,
        results,
        MEASURED,
        GOAL_GROWTH,
        vars(args),
        started_at,
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
