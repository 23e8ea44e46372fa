"""The live redundancy status: the fields of the redundancy screen, role history, lag, timing and counters.

Built by the pair service and stored in the node state row (about twice a
second), from where the redundancy page, ``/api/redundancy/status`` and
``/metrics`` read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings

from redundancy.roles import Role

if TYPE_CHECKING:
    from redundancy.service import PairService


def database_label() -> str:
    """The database this node writes to, without credentials."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:{db['NAME']}"
    return f"postgresql://{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"


def build_status(service: PairService, now: float) -> dict[str, Any]:
    cfg = service.config
    machine = service.machine
    replicator = service.replicator
    peer = service.partner.view(now)
    hb = service.partner.heartbeat or {}
    alive = peer is not None and peer.silent_for < cfg.timeout
    dialer = service.dialer
    outgoing = dialer is not None and dialer.connection is not None and dialer.connection.open
    incoming = any(c.open for c in service.incoming)
    failed = dialer.failed_attempts if dialer is not None else 0
    active_name, active_url = service.active_node()
    partner_seq = int(hb.get("s", 0) or 0)
    verified = replicator.config_verified and not replicator.history_stuck
    return {
        "node": cfg.node,
        "role": str(machine.role),
        "epoch": machine.epoch,
        "active_node": active_name,
        "active_url": active_url,
        "config": cfg.describe(),
        "this": {
            "symbol": cfg.node,
            "port": service.server.port if service.server else cfg.sync_port,
            "activate": cfg.activate,
            "is_primary": machine.role == Role.ACTIVE,
            "connected_server": incoming,
            "connected_client": outgoing,
            "enable_db_sync": cfg.db_sync,
            "database": database_label(),
            # Equal configuration hashes are not "in sync" while history rows are stuck (ADR 0011).
            "verified": verified,
            "config_hash": replicator.config_hash,
            "comment": cfg.comment,
            # Flap damping (ADR 0010): the silence this node now demands before it takes control.
            "takeover_delay_ms": round(machine.takeover_delay(now) * 1000),
            "link_losses": machine.link_losses(now),
            "flapping": machine.flapping(now),
        },
        "partners": [
            {
                "no": 1,
                "symbol": cfg.partner,
                "ip_address": cfg.partner_host,
                "port": cfg.partner_port,
                "period_ms": round(cfg.period * 1000),
                "timeout_ms": round(cfg.timeout * 1000),
                "retry_count": cfg.retries,
                "activate": cfg.activate,
                "is_primary": alive and peer.role == Role.ACTIVE,
                "connected": outgoing or incoming,
                "fault": (not alive) and failed >= cfg.retries,
                "fault_reason": (dialer.last_error if dialer and not alive else ""),
                "database": "in sync" if replicator.backlog == 0 and alive else f"{replicator.backlog} row(s) behind",
                "verified": verified,
                "comment": cfg.partner_comment,
                "role": str(peer.role) if alive else "unknown",
                "epoch": peer.epoch if peer else None,
                "heartbeat_age_ms": round(peer.silent_for * 1000) if peer else None,
                "url": hb.get("url") or cfg.partner_url,
                "caught_up": bool(hb.get("caught_up")),
                "clock_offset_ms": _ms(service.clock.offset),
                "clock_round_trip_ms": _ms(service.clock.delay),
                "clock_skewed": service.clock_skewed,
            }
        ],
        "sync": {
            "image_seq": service.engine.image.seq,
            "partner_seq": partner_seq,
            "lag_seq": max(0, partner_seq - service.engine.image.seq) if machine.role != Role.ACTIVE else 0,
            "lag_ms": replicator.lag_ms,
            "image_synced": replicator.image_synced,
            "caught_up": replicator.caught_up,
            "history_backlog": replicator.backlog,
            # Active side: the partner holds every row of ours older than the bound (replication.CURRENT_WITHIN_*).
            "history_current": replicator.history_current,
            "history_stuck": replicator.history_stuck,
            "history_quarantined": replicator.quarantined,
            "history_resends": replicator.resends,
            "history_store_failures": replicator.store_failures,
            "history_rows_sent": replicator.rows_sent,
            "history_rows_received": replicator.rows_received,
            "deltas_applied": replicator.deltas_applied,
            "snapshots_applied": replicator.snapshots_applied,
            "stale_epoch_rejected": replicator.stale_rejected,
            "commands_sent_unconfirmed": replicator.sent_unconfirmed,
            "command_barrier": "dropped" if replicator.barrier_dropped else "on",
            "frames_rejected": dict(service.rejects.counts),
        },
        "witness": {
            "configured": cfg.witness_configured,
            "connected": bool(service.witness and service.witness.connection and service.witness.connection.open),
            "confirms_partner_gone": service.witness_verdict(now),
        },
        # Timing health (bms.engine.loopwatch), over the last minute: the engine loop's lag and the
        # heartbeats' |interval - period|, in ms; web load on this node must not move them.
        "engine_loop": service.engine.loop_watch.summary(now),
        "heartbeat_jitter": {
            "period_ms": round(cfg.period * 1000),
            "window_s": service.heartbeats_sent.deviations.seconds,
            "sent": service.heartbeats_sent.summary(now),
            "received": service.heartbeats_received.summary(now),
        },
        # Takeovers (from standby, syncing or isolated) since the process started; not cold starts or handovers.
        "failovers": service.takeovers,
        "role_changes": list(service.role_changes),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
