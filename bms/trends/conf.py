"""The trend settings, each read from Django settings, else the environment, else its default.

Nothing here is required. docs/trends.md lists them with what they cost
(the spool's size, the tiers' retention).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings


def _get(name: str, default: Any, kind: type = str) -> Any:
    if hasattr(settings, name):
        return kind(getattr(settings, name))
    raw = os.environ.get(name, "").strip()
    return kind(raw) if raw else default


def flush_seconds() -> float:
    """The engine hands its buffered samples to the writer at least this often."""
    return _get("BMS_TREND_FLUSH_SECONDS", 1.0, float)


def flush_rows() -> int:
    """... and as soon as this many samples are buffered (one COPY per batch)."""
    return _get("BMS_TREND_FLUSH_ROWS", 10_000, int)


def memory_rows() -> int:
    """Samples handed over but not yet stored may wait in memory up to this many; beyond, they go to the spool."""
    return _get("BMS_TREND_MEMORY_ROWS", 200_000, int)


def stall_seconds() -> float:
    """A batch the database has not taken within this many seconds (it is away or stalls) goes to the spool."""
    return _get("BMS_TREND_STALL_SECONDS", 5.0, float)


def data_dir() -> Path:
    """The node's local data directory (``BMS_DATA_DIR``, default ``var/`` in the source tree)."""
    return Path(_get("BMS_DATA_DIR", str(Path(settings.BASE_DIR) / "var")))


def spool_dir() -> Path:
    """Where samples wait on local disk while the database is away: one directory per node and database.

    The database's name is part of the default, because the samples belong to it: nodes (and test runs)
    that share a source tree but not a database never share a spool."""
    configured = _get("BMS_TREND_SPOOL_DIR", "")
    if configured:
        return Path(configured)
    database = Path(str(settings.DATABASES["default"].get("NAME") or "db")).stem
    return data_dir() / f"trend-spool-{settings.BMS_NODE_NAME}-{database}"


def spool_bytes() -> int:
    """The spool's bound on disk; when it is full the oldest samples are dropped (counted, logged, an event)."""
    return int(_get("BMS_TREND_SPOOL_MB", 1024.0, float) * 1024 * 1024)


def spool_warn_percent() -> float:
    """An event (warning) when the spool is this full, well before anything is dropped."""
    return _get("BMS_TREND_SPOOL_WARN_PERCENT", 50.0, float)


def retention_days(tier: str) -> int:
    """How long a tier is kept: raw 400 days, hourly 5 years, daily forever (0) by default."""
    defaults = {"raw": 400, "hourly": 1826, "daily": 0}
    return _get(f"BMS_TREND_{tier.upper()}_RETENTION_DAYS", defaults[tier], int)


def partition_days(tier: str) -> int:
    """The time span of one PostgreSQL partition of a tier: raw a week, hourly 13 weeks by default."""
    defaults = {"raw": 7, "hourly": 91}
    return max(1, _get(f"BMS_TREND_{tier.upper()}_PARTITION_DAYS", defaults[tier], int))


def partitions_ahead_days() -> int:
    """Partitions are created this far ahead of now."""
    return _get("BMS_TREND_PARTITIONS_AHEAD_DAYS", 14, int)


def rollup_grace_seconds() -> float:
    """An hour (a day) is rolled up this long after it ended, so the last flushes are in; later rows redo it."""
    return _get("BMS_TREND_ROLLUP_GRACE_SECONDS", 120.0, float)


def rollup_seconds() -> float:
    """How often roll-ups are computed (Celery beat's period; the embedded thread's)."""
    return _get("BMS_TREND_ROLLUP_SECONDS", 300.0, float)


def maintenance_seconds() -> float:
    """How often partitions are created ahead and expired data dropped (beat's period; the embedded thread's)."""
    return _get("BMS_TREND_MAINTENANCE_SECONDS", 3600.0, float)


def maintenance_in_engine() -> bool:
    """True: the engine runs roll-ups and upkeep on a thread of its own (the embedded shape: no broker, no beat)."""
    default = bool(getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False))
    return str(_get("BMS_TREND_MAINTENANCE_IN_ENGINE", default)).strip().lower() in ("1", "true", "yes", "on")


def node_health_points() -> bool:
    """Whether ``migrate`` creates the ``node`` device with the trend writer's gauges and the spool alarm.

    On by default; the test settings turn it off so that tests see only the devices they create."""
    return _get("BMS_NODE_HEALTH_POINTS", True, lambda raw: str(raw).lower() not in ("0", "false", "no", "off", ""))
