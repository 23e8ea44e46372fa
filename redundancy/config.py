"""The pair's configuration, read from settings and checked before anything starts.

Node identity and the partner's address are node-local settings (environment
variables), not database rows: the database is replicated from the active
node, and the standby must not receive its partner's view of who is who.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

MIN_SECRET_LENGTH = 16
MIN_PERIOD_MS = 50
PLACEHOLDER_MARK = "change-me"  # compared lower-case
EXAMPLE_ENV_FILES = (Path(__file__).resolve().parents[1] / "docker" / "pair.env.example",)
KNOWN_PLACEHOLDERS = frozenset({"CHANGE-ME-sync-link-secret"})  # docker/pair.env.example's, if the file is absent


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
    flap_window: float = 60.0  # 0: no flap damping
    max_takeover_delay: float | None = None  # None: roles.DEFAULT_MAX_DELAY_FACTOR x timeout
    clock_skew_warn: float = 1.0  # seconds of partner clock offset above which an event warns

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
                "flap_window_ms": round(self.flap_window * 1000),
                "activate": self.activate,
                "comment": self.partner_comment,
            },
        }


def example_secrets() -> set[str]:
    """The sync secrets written in the example env file(s) shipped with the code: never acceptable as real ones."""
    found = set(KNOWN_PLACEHOLDERS)
    for path in EXAMPLE_ENV_FILES:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue  # an installation without the docker folder still refuses the known values
        for line in lines:
            name, sep, value = line.strip().partition("=")
            if sep and name.strip() == "BMS_SYNC_SECRET" and value.strip():
                found.add(value.strip())
    return found


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


def heartbeat_timeout() -> float:
    """The heartbeat timeout in seconds, for the web side (defaults where a value is missing or bad).

    The web side must not fail a request on a setting the engine would refuse
    at start-up anyway; :func:`load` is the strict reader.
    """
    try:
        period_ms = float(getattr(settings, "BMS_HEARTBEAT_PERIOD_MS", "") or 1000)
    except (TypeError, ValueError):
        period_ms = 1000.0
    try:
        timeout_ms = float(getattr(settings, "BMS_HEARTBEAT_TIMEOUT_MS", "") or 3 * period_ms)
    except (TypeError, ValueError):
        timeout_ms = 3 * period_ms
    return max(timeout_ms, 2 * MIN_PERIOD_MS) / 1000


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
    if PLACEHOLDER_MARK in secret.lower() or secret in example_secrets():
        # A secret everyone can read in the repository keys nothing: whoever reaches the sync port could join.
        raise ImproperlyConfigured(
            "BMS_SYNC_SECRET is a placeholder (it contains CHANGE-ME or is the value of docker/pair.env.example): "
            'set a secret of your own on both nodes, e.g. python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
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
    max_delay_ms = s.BMS_FLAP_MAX_DELAY_MS
    if max_delay_ms:
        max_delay_ms = _number("BMS_FLAP_MAX_DELAY_MS", max_delay_ms, timeout_ms)
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
        flap_window=_number("BMS_FLAP_WINDOW_MS", s.BMS_FLAP_WINDOW_MS, 0) / 1000,
        max_takeover_delay=max_delay_ms / 1000 if max_delay_ms else None,
        clock_skew_warn=_number("BMS_CLOCK_SKEW_WARN_MS", s.BMS_CLOCK_SKEW_WARN_MS, 1) / 1000,
    )
