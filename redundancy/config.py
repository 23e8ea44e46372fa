"""The pair's configuration, read from settings and checked before anything starts.

Node identity and the partner's address are node-local settings (environment
variables), not database rows: the database is replicated from the active
node, and the standby must not receive its partner's view of who is who.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

MIN_SECRET_LENGTH = 16
MIN_PERIOD_MS = 50


@dataclass(frozen=True, slots=True)
class PairConfig:
    """Everything the pair service needs; times in seconds."""

    node: str
    partner: str
    partner_host: str
    partner_port: int
    partner_url: str
    public_url: str
    sync_host: str
    sync_port: int
    secret: bytes
    preferred: bool
    period: float
    timeout: float
    retries: int
    startup_allowance: float
    hold_down: float
    failback_auto: bool
    witness_host: str
    witness_port: int
    activate: bool
    db_sync: bool
    comment: str
    partner_comment: str

    @property
    def witness_configured(self) -> bool:
        return bool(self.witness_host)

    @property
    def handover_timeout(self) -> float:
        return max(2 * self.timeout, 1.0)

    def describe(self) -> dict[str, Any]:
        """The configuration as shown on the redundancy page (never the secret)."""
        return {
            "symbol": self.node,
            "sync_port": self.sync_port,
            "activate": self.activate,
            "enable_db_sync": self.db_sync,
            "preferred": self.preferred,
            "failback": "auto" if self.failback_auto else "manual",
            "public_url": self.public_url,
            "comment": self.comment,
            "witness": f"{self.witness_host}:{self.witness_port}" if self.witness_host else "",
            "partner": {
                "symbol": self.partner,
                "address": self.partner_host,
                "port": self.partner_port,
                "url": self.partner_url,
                "period_ms": round(self.period * 1000),
                "timeout_ms": round(self.timeout * 1000),
                "retries": self.retries,
                "activate": self.activate,
                "comment": self.partner_comment,
            },
        }


def pair_configured() -> bool:
    return bool(getattr(settings, "BMS_PARTNER_ADDRESS", ""))


def split_address(value: str, name: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ImproperlyConfigured(f"{name} must be host:port, got {value!r}")
    return host.strip("[]"), int(port)


def _number(name: str, value: str, low: float, kind: type = float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
    if number < low:
        raise ImproperlyConfigured(f"{name} must be at least {low}, got {value!r}")
    return number


def _flag(name: str, value: str) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0, got {value!r}")


def load() -> PairConfig:
    """Build the configuration from settings; raise ImproperlyConfigured naming the first bad value."""
    s = settings
    partner_host, partner_port = split_address(s.BMS_PARTNER_ADDRESS, "BMS_PARTNER_ADDRESS")
    secret = s.BMS_SYNC_SECRET
    if len(secret) < MIN_SECRET_LENGTH:
        raise ImproperlyConfigured(
            f"BMS_SYNC_SECRET must be set to the same secret on both nodes (at least {MIN_SECRET_LENGTH} characters)"
        )
    partner = s.BMS_PARTNER_NAME or ("backup" if s.BMS_NODE_NAME == "main" else "main")
    if partner == s.BMS_NODE_NAME:
        raise ImproperlyConfigured(f"BMS_PARTNER_NAME must differ from BMS_NODE_NAME ({partner!r})")
    period_ms = _number("BMS_HEARTBEAT_PERIOD_MS", s.BMS_HEARTBEAT_PERIOD_MS, MIN_PERIOD_MS)
    timeout_ms = _number("BMS_HEARTBEAT_TIMEOUT_MS", s.BMS_HEARTBEAT_TIMEOUT_MS or 3 * period_ms, 2 * period_ms)
    allowance_ms = s.BMS_STARTUP_ALLOWANCE_MS or 2 * timeout_ms + 2000
    failback = s.BMS_FAILBACK.strip().lower()
    if failback not in ("auto", "manual"):
        raise ImproperlyConfigured(f"BMS_FAILBACK must be auto or manual, got {s.BMS_FAILBACK!r}")
    witness_host, witness_port = ("", 0)
    if s.BMS_WITNESS_ADDRESS:
        witness_host, witness_port = split_address(s.BMS_WITNESS_ADDRESS, "BMS_WITNESS_ADDRESS")
    preferred = _flag("BMS_PREFERRED", s.BMS_PREFERRED) if s.BMS_PREFERRED else s.BMS_NODE_NAME == "main"
    return PairConfig(
        node=s.BMS_NODE_NAME,
        partner=partner,
        partner_host=partner_host,
        partner_port=partner_port,
        partner_url=s.BMS_PARTNER_URL.rstrip("/"),
        public_url=s.BMS_PUBLIC_URL.rstrip("/"),
        sync_host=s.BMS_SYNC_HOST,
        sync_port=_number("BMS_SYNC_PORT", s.BMS_SYNC_PORT, 0, int),
        secret=secret.encode(),
        preferred=preferred,
        period=period_ms / 1000,
        timeout=timeout_ms / 1000,
        retries=_number("BMS_HEARTBEAT_RETRIES", s.BMS_HEARTBEAT_RETRIES, 0, int),
        startup_allowance=_number("BMS_STARTUP_ALLOWANCE_MS", allowance_ms, 0) / 1000,
        hold_down=_number("BMS_HOLD_DOWN_MS", s.BMS_HOLD_DOWN_MS, 0) / 1000,
        failback_auto=failback == "auto",
        witness_host=witness_host,
        witness_port=witness_port,
        activate=_flag("BMS_REDUNDANCY_ACTIVATE", s.BMS_REDUNDANCY_ACTIVATE),
        db_sync=_flag("BMS_DB_SYNC", s.BMS_DB_SYNC),
        comment=s.BMS_REDUNDANCY_COMMENT,
        partner_comment=s.BMS_PARTNER_COMMENT,
    )
