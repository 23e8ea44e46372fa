"""Prometheus metrics of the pair in the text exposition format 0.0.4, written by hand (no client library).

Read from the node state row, like every other view of the role. A value
this node does not know (no heartbeat heard yet, no status) is left out
rather than invented.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bms.trends import status as trend_status
from redundancy import nodeview
from redundancy.nodeview import UNKNOWN, NodeView
from redundancy.roles import Role

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROLES = [str(role) for role in Role] + [UNKNOWN]
#: quantile label -> key of a timing summary (bms.engine.loopwatch); quantile 1 is the maximum
QUANTILES = (("0.5", "p50_ms"), ("0.99", "p99_ms"), ("1", "max_ms"))
DIRECTIONS = ("sent", "received")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels.items()) + "}"


def _number(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float | None]]):
        samples = [(labels, value) for labels, value in samples if value is not None]
        if not samples:
            return
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(**labels)} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(view: NodeView) -> str:
    out = _Writer()
    node = {"node": view.node}
    out.family(
        "bms_redundancy_role",
        "gauge",
        "1 for this node's current role, 0 for the others (unknown: no fresh status from the pair service).",
        ((node | {"role": role}, int(role == view.role)) for role in ROLES),
    )
    out.family(
        "bms_redundancy_pair_configured", "gauge", "1 if this node runs as one half of a pair.", [(node, view.pair)]
    )
    out.family("bms_redundancy_epoch", "gauge", "Fencing epoch of this node.", [(node, view.epoch)])
    status = view.status if view.fresh else {}
    # A pair node's engine reports its loop in the status row; a node alone only if its engine runs in this process.
    _engine_loop(out, node, status.get("engine_loop") if view.pair else nodeview.engine_loop())
    for family in trend_status.metric_families(view.node):
        out.family(*family)
    if not view.pair:
        return out.text()
    partner = (status.get("partners") or [{}])[0]
    sync = status.get("sync") or {}
    out.family(
        "bms_redundancy_status_age_seconds",
        "gauge",
        "Seconds since the pair service last wrote this node's status.",
        [(node, view.age_seconds)],
    )
    age_ms = partner.get("heartbeat_age_ms")
    pair_labels = node | {"partner": view.partner}
    out.family(
        "bms_redundancy_heartbeat_age_seconds",
        "gauge",
        "Seconds since anything was heard from the partner.",
        [(pair_labels, None if age_ms is None else age_ms / 1000)],
    )
    offset_ms = partner.get("clock_offset_ms")
    out.family(
        "bms_redundancy_partner_clock_offset_seconds",
        "gauge",
        "The partner's wall clock minus this node's, measured from the heartbeats.",
        [(pair_labels, None if offset_ms is None else offset_ms / 1000)],
    )
    lag_ms = sync.get("lag_ms")
    out.family(
        "bms_redundancy_sync_lag_seconds",
        "gauge",
        "Age of the last replicated delta when it was applied (standby side).",
        [(pair_labels, None if lag_ms is None else lag_ms / 1000)],
    )
    out.family(
        "bms_redundancy_history_backlog",
        "gauge",
        "History rows the partner has not acknowledged (sent or not).",
        [(pair_labels, sync.get("history_backlog"))],
    )
    out.family(
        "bms_sync_quarantined_rows",
        "gauge",
        "History rows this node cannot send to the partner (see the history_quarantined events).",
        [(pair_labels, sync.get("history_quarantined"))],
    )
    jitter = status.get("heartbeat_jitter") or {}
    window = jitter.get("window_s", 60)
    out.family(
        "bms_heartbeat_jitter_ms",
        "gauge",
        f"|interval - period| between consecutive heartbeats this node sent or received, over the last {window:g} s"
        " (quantile 1: the maximum).",
        (
            (pair_labels | {"direction": direction, "quantile": quantile}, (jitter.get(direction) or {}).get(key))
            for direction in DIRECTIONS
            for quantile, key in QUANTILES
        ),
    )
    out.family(
        "bms_heartbeat_intervals",
        "gauge",
        f"Heartbeat intervals measured for the jitter, over the last {window:g} s.",
        ((pair_labels | {"direction": d}, (jitter.get(d) or {}).get("intervals")) for d in DIRECTIONS),
    )
    out.family(
        "bms_redundancy_failovers_total",
        "counter",
        "Takeovers by this node since its process started (it became active from standby, syncing or isolated; "
        "not a cold start or a handover received).",
        [(node, status.get("failovers") if status else None)],
    )
    out.family(
        "bms_redundancy_partner_connected",
        "gauge",
        "1 if the sync link to the partner is up.",
        [(pair_labels, bool(partner.get("connected")) if status else None)],
    )
    out.family(
        "bms_redundancy_config_verified",
        "gauge",
        "1 if both nodes hold the same configuration (equal hashes).",
        [(pair_labels, bool(partner.get("verified")) if status else None)],
    )
    return out.text()


def _engine_loop(out: _Writer, node: dict[str, str], loop: dict[str, Any] | None) -> None:
    """The engine loop's lag (:class:`bms.engine.loopwatch.LoopWatch` summary), left out if unknown."""
    if not loop:
        return
    window, slow = loop.get("window_s", 60), loop.get("slow_ms", 50)
    out.family(
        "bms_engine_loop_lag_ms",
        "gauge",
        f"How late the engine loop's {loop.get('tick_ms', 20):g} ms watch tick woke up, over the last {window:g} s"
        " (quantile 1: the maximum).",
        ((node | {"quantile": quantile}, loop.get(key)) for quantile, key in QUANTILES),
    )
    out.family(
        "bms_engine_loop_lag_samples",
        "gauge",
        f"Watch ticks over the last {window:g} s.",
        [(node, loop.get("samples"))],
    )
    out.family(
        "bms_engine_loop_slow_ticks_total",
        "counter",
        f"Watch ticks that woke more than {slow:g} ms late since the engine started.",
        [(node, loop.get("slow_total"))],
    )
