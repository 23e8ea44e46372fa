"""Fixtures for the web side of the pair: this test process plays one node of a configured pair.

The pair service is not running here; the tests write this node's
``NodeState`` row the way the service does (role, epoch, active node, the
status document of ``redundancy.status.build_status``, ``updated_at``) and
check what pages, the API, the guard and the command line make of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from redundancy.models import NodeState

SECRET = "web-test-pair-secret-0123"
MAIN_URL = "http://main.example:8000"
BACKUP_URL = "http://backup.example:8001"


def status_doc(
    node: str,
    role: str,
    epoch: int,
    partner: str,
    partner_role: str,
    partner_url: str,
    caught_up: bool = True,
    partner_caught_up: bool = True,
) -> dict[str, Any]:
    """A status document with the keys and shapes ``build_status`` writes."""
    return {
        "node": node,
        "role": role,
        "epoch": epoch,
        "this": {
            "symbol": node,
            "port": 8801,
            "activate": True,
            "is_primary": role == "active",
            "connected_server": True,
            "connected_client": True,
            "enable_db_sync": True,
            "database": f"sqlite:/var/{node}.sqlite3",
            "verified": True,
            "config_hash": "ab" * 32,
            "comment": "server room 2",
        },
        "partners": [
            {
                "no": 1,
                "symbol": partner,
                "ip_address": "10.0.0.11",
                "port": 8800,
                "period_ms": 1000,
                "timeout_ms": 3000,
                "retry_count": 3,
                "activate": True,
                "is_primary": partner_role == "active",
                "connected": True,
                "fault": False,
                "fault_reason": "",
                "database": "in sync",
                "verified": True,
                "comment": "server room 1",
                "role": partner_role,
                "epoch": epoch,
                "heartbeat_age_ms": 120,
                "url": partner_url,
                "caught_up": partner_caught_up,
            }
        ],
        "sync": {
            "image_seq": 1500,
            "partner_seq": 1502,
            "lag_seq": 2,
            "lag_ms": 3.25,
            "image_synced": True,
            "caught_up": caught_up,
            "history_backlog": 7,
            "history_rows_sent": 10,
            "history_rows_received": 20,
            "deltas_applied": 30,
            "snapshots_applied": 1,
            "stale_epoch_rejected": 0,
            "frames_rejected": {},
        },
        "witness": {"configured": False, "connected": False, "confirms_partner_gone": None},
        "engine_loop": {
            "tick_ms": 20.0,
            "window_s": 60.0,
            "samples": 2990,
            "p50_ms": 0.35,
            "p99_ms": 4.2,
            "max_ms": 61.5,
            "slow_ms": 50.0,
            "slow": 1,
            "slow_total": 3,
            "last_slow_at": "2026-12-01T10:00:00+00:00",
        },
        "heartbeat_jitter": {
            "period_ms": 1000,
            "window_s": 60.0,
            "sent": {"intervals": 59, "p50_ms": 0.8, "p99_ms": 12.5, "max_ms": 13.0},
            "received": {"intervals": 58, "p50_ms": 1.1, "p99_ms": 20.25, "max_ms": 22.0},
        },
        "failovers": 2,
        "role_changes": [],
    }


@dataclass
class PairNodeUnderTest:
    """This process as node ``name`` of a pair; ``set_role`` writes its node state row."""

    name: str
    partner: str
    url: str
    partner_url: str

    def set_role(
        self,
        role: str,
        epoch: int = 4,
        active_node: str | None = None,
        age: float = 0.0,
        partner_role: str | None = None,
        caught_up: bool = True,
        partner_caught_up: bool = True,
    ) -> NodeState:
        if active_node is None:
            active_node = self.name if role == "active" else self.partner
        active_url = {self.name: self.url, self.partner: self.partner_url}.get(active_node, "")
        if partner_role is None:
            partner_role = "standby" if role == "active" else "active"
        status = status_doc(
            self.name, role, epoch, self.partner, partner_role, self.partner_url, caught_up, partner_caught_up
        )
        row, _ = NodeState.objects.update_or_create(
            node=self.name,
            defaults={
                "role": role,
                "epoch": epoch,
                "active_node": active_node,
                "active_url": active_url,
                "status": status,
                "updated_at": timezone.now() - timedelta(seconds=age),
            },
        )
        return row


def configure(settings, name: str) -> PairNodeUnderTest:
    partner = "backup" if name == "main" else "main"
    url, partner_url = (MAIN_URL, BACKUP_URL) if name == "main" else (BACKUP_URL, MAIN_URL)
    settings.BMS_NODE_NAME = name
    settings.BMS_PARTNER_NAME = partner
    settings.BMS_PARTNER_ADDRESS = "10.0.0.11:8800"
    settings.BMS_SYNC_SECRET = SECRET
    settings.BMS_PUBLIC_URL = url
    settings.BMS_PARTNER_URL = partner_url
    settings.BMS_REDUNDANCY_ACTIVATE = "1"
    return PairNodeUnderTest(name, partner, url, partner_url)


@pytest.fixture
def as_backup(settings, db) -> PairNodeUnderTest:
    """This process is node ``backup`` of a pair whose partner ``main`` is at MAIN_URL."""
    return configure(settings, "backup")


@pytest.fixture
def as_main(settings, db) -> PairNodeUnderTest:
    """This process is node ``main`` of a pair whose partner ``backup`` is at BACKUP_URL."""
    return configure(settings, "main")


@pytest.fixture
def operator(db) -> User:
    """An operator who may write points (like the demo user), not staff."""
    user = User.objects.create_user("op", password="op-pass-123")
    user.user_permissions.add(Permission.objects.get(codename="write_point", content_type__app_label="points"))
    return user


@pytest.fixture
def engineer(db) -> User:
    """Staff with every permission on devices and points, and the switchover permission."""
    user = User.objects.create_user("eng", password="eng-pass-123", is_staff=True)
    wanted = Permission.objects.filter(content_type__app_label__in=["points"]) | Permission.objects.filter(
        codename="switchover", content_type__app_label="redundancy"
    )
    user.user_permissions.add(*wanted)
    return user
