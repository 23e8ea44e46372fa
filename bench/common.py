"""Small helpers shared by the benches: percentiles, the environment record, the JSON results file."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values, default=math.nan),
    }


def ratio(value: float, base: float) -> float:
    return value / base if base > 0 else math.nan


def environment() -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load": os.getloadavg(),
        "commit": commit,
        "dirty": bool(dirty.strip()),
    }


def write_json(name: str, started: datetime, document: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    body = {"benchmark": name, "started": started.isoformat(), "environment": environment(), **document}
    path.write_text(json.dumps(without_nan(body), indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    return path


def without_nan(value: Any) -> Any:
    """JSON has no NaN: an empty summary is written as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_nan(item) for item in value]
    return value


def add_layout_argument(parser: Any) -> None:
    """``--layout thread|processes``: how each node of a bench's pair runs (``PairOptions(split=...)``)."""
    parser.add_argument(
        "--layout",
        choices=("thread", "processes"),
        default="thread",
        help="thread: runbms per node (the engine on its own thread, the default); processes: the engine and the web"
        " side in separate processes per node (runengine + runbms --no-engine)",
    )


def median_seconds(function: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` calls of ``function`` (after one warm-up call)."""
    function()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def growth_verdict(
    name: str,
    what: str,
    sizes: Sequence[int],
    results: dict[int, dict[str, float]],
    measured: Sequence[str],
    goal: float,
    arguments: dict[str, Any],
    started: datetime,
) -> bool:
    """Print each figure's growth from the smallest size to the largest against ``goal`` (at most that many times,
    for the ``measured`` ones), write the results file, and say whether the goal was met."""
    first, last = results[sizes[0]], results[sizes[-1]]
    growth = {figure: ratio(last[figure], first[figure]) for figure in first}
    met = all(growth[figure] <= goal for figure in measured)
    print(
        f"growth from {sizes[0]:,} to {sizes[-1]:,} {what}: "
        + ", ".join(f"{figure} {value:.2f}x" for figure, value in growth.items())
        + f" -> goal (at most {goal}x for {', '.join(measured)}) {'MET' if met else 'NOT MET'}"
    )
    path = write_json(
        name,
        started,
        {"arguments": arguments, "seconds": {str(k): v for k, v in results.items()}, "growth": growth, "met": met},
    )
    print(f"results: {path}")
    return met


def add_turn_budget_argument(parser: argparse.ArgumentParser) -> None:
    """``--turn-budget-ms``: the node's BMS_TURN_BUDGET_MS (bms/engine/turns.py), for the benches that start a node."""
    parser.add_argument(
        "--turn-budget-ms",
        type=float,
        default=10.0,
        help="BMS_TURN_BUDGET_MS of the node: the most of a loop turn spent on poll answers and evaluation slices "
        "(default 10, the product's; 0: no limit)",
    )
