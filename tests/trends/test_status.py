"""The trend writer's status file, as /metrics and /healthz read it."""

from datetime import UTC, datetime, timedelta

from bms.trends import status


def document(**fields) -> dict:
    base = {
        "node": "main",
        "updated_at": datetime.now(UTC).isoformat(),
        "written": 10,
        "waiting": 0,
        "spool_samples": 0,
        "spool_bytes": 0,
        "spool_capacity_bytes": 1000,
        "lost": 0,
        "lost_spool_full": 0,
        "lost_refused": 0,
        "lost_memory": 0,
        "database": "ok",
    }
    return base | fields


def test_health_says_ok_spooling_losing_or_unknown(tmp_path):
    status.write(tmp_path, document())
    assert status.health(status.read(tmp_path))["status"] == "ok"
    status.write(tmp_path, document(database="down", spool_samples=40, spool_bytes=500, waiting=40))
    health = status.health(status.read(tmp_path))
    assert (health["status"], health["spool_percent"], health["waiting"]) == ("spooling", 50.0, 40)
    status.write(tmp_path, document(lost=3, lost_spool_full=3))
    assert status.health(status.read(tmp_path))["status"] == "losing"
    old = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    status.write(tmp_path, document(updated_at=old))
    assert status.health(status.read(tmp_path)) == {"status": "unknown"}  # no engine writes trends here now
    assert status.read(tmp_path / "nowhere") is None


def test_metric_families_carry_the_counts_and_losses_by_reason(tmp_path):
    status.write(tmp_path, document(lost=5, lost_spool_full=4, lost_refused=1))
    families = {name: samples for name, _, _, samples in status.metric_families("main", status.read(tmp_path))}
    assert families["bms_trend_samples_written_total"] == [({"node": "main"}, 10)]
    assert families["bms_trend_database_up"] == [({"node": "main"}, True)]
    lost = {labels["reason"]: value for labels, value in families["bms_trend_samples_lost_total"]}
    assert lost == {"spool_full": 4, "refused": 1, "memory": 0}
