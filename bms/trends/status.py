"""The trend writer's status, as a file next to the spool: what ``/metrics`` and ``/healthz`` show of trending.

The writer's spool thread rewrites ``status.json`` in the spool directory
about once a second (atomically: a reader never sees half a file). A file,
not a database row: the moments that matter (the database away, the spool
filling, samples lost) are exactly those in which no row can be written, and
the web processes of the node read it from the same disk whatever process
the engine runs in. A status older than :data:`STALE_SECONDS` means no
engine writes trends on this node (stopped, or not started yet).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bms.trends import conf

STATUS_FILE = "status.json"
STALE_SECONDS = 10.0
#: (name, type, help, labels -> value) as ``redundancy.metrics``' writer takes them
Family = tuple[str, str, str, list[tuple[dict[str, str], float | int | bool | None]]]


def write(directory: Path, document: dict[str, Any]) -> None:
    path = Path(directory) / STATUS_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, default=str), encoding="utf-8")
    os.replace(temporary, path)


def read(directory: Path | None = None) -> dict[str, Any] | None:
    """The last status written on this node (with ``age_seconds``), or None if there is none."""
    path = Path(directory or conf.spool_dir()) / STATUS_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        updated = datetime.fromisoformat(document["updated_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    document["age_seconds"] = max(0.0, (datetime.now(UTC) - updated).total_seconds())
    return document


def health(document: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``trends`` part of ``/healthz``: ``status`` is ``ok``, ``spooling`` (the database does not take
    samples: they wait on disk), ``losing`` (samples were lost since the engine started) or ``unknown``."""
    document = read() if document is None else document
    if document is None or document.get("age_seconds", 0.0) > STALE_SECONDS:
        return {"status": "unknown"}
    state = "losing" if document.get("lost") else "spooling" if document.get("database") != "ok" else "ok"
    capacity = max(document.get("spool_capacity_bytes") or 1, 1)
    return {
        "status": state,
        "waiting": document.get("waiting"),
        "spool_samples": document.get("spool_samples"),
        "spool_percent": round(100.0 * (document.get("spool_bytes") or 0) / capacity, 1),
        "lost": document.get("lost"),
    }


def metric_families(node: str, document: dict[str, Any] | None = None) -> list[Family]:
    """The trend writer's metrics for ``/metrics`` (empty if no engine writes trends on this node)."""
    document = read() if document is None else document
    if document is None:
        return []
    labels = {"node": node}
    return [
        ("bms_trend_status_age_seconds", "gauge", "Seconds since the trend writer last wrote its status.",
         [(labels, document.get("age_seconds"))]),
        ("bms_trend_database_up", "gauge", "1 if the trend writer's last database write worked.",
         [(labels, document.get("database") == "ok")]),
        ("bms_trend_samples_written_total", "counter", "Samples the database took since the engine started.",
         [(labels, document.get("written"))]),
        ("bms_trend_samples_waiting", "gauge", "Samples not yet in the database (memory and spool).",
         [(labels, document.get("waiting"))]),
        ("bms_trend_spool_samples", "gauge", "Samples waiting in the disk spool.",
         [(labels, document.get("spool_samples"))]),
        ("bms_trend_spool_bytes", "gauge", "Bytes the disk spool takes.", [(labels, document.get("spool_bytes"))]),
        ("bms_trend_spool_capacity_bytes", "gauge", "The disk spool's bound.",
         [(labels, document.get("spool_capacity_bytes"))]),
        ("bms_trend_samples_lost_total", "counter",
         "Samples lost since the engine started (spool full, refused by the database, beyond the memory bound).",
         [(labels | {"reason": reason}, document.get(f"lost_{reason}"))
          for reason in ("spool_full", "refused", "memory")]),
    ]  # fmt: skip
