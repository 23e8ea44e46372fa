"""Reading settings from the environment, failing fast with the variable's name."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured


def required(name: str) -> str:
    """Return the environment variable ``name`` or stop start-up with a message naming it."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise ImproperlyConfigured(
            f"The environment variable {name} is required for this deployment shape but is not set."
        )
    return value


def flag(name: str, default: bool = False) -> bool:
    """A boolean environment variable: 1/true/yes/on are true."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


#: libpq settings that bound how long a silent database (packets dropped: a host gone without a reset, a firewall)
#: can hold a connection, each overridable in the URL's query (``?tcp_user_timeout=30000``). Without them a query
#: sent into the silence waits for the kernel's retransmissions (about 15 minutes) and a new connection for its
#: SYN retries (about 2 minutes): the engine's database thread, and everything queued behind it, with it.
SILENT_DATABASE_LIMITS = {
    "connect_timeout": "5",  # s to establish a connection
    "tcp_user_timeout": "15000",  # ms that sent data may stay unacknowledged before the connection fails
    "keepalives": "1",  # and an idle connection (or one waiting for an answer) is probed:
    "keepalives_idle": "10",  # after 10 s of silence,
    "keepalives_interval": "3",  # every 3 s,
    "keepalives_count": "3",  # failing after 3 unanswered probes
    # And on the server's side: a session whose client vanished in the middle of a transaction (packets dropped, so
    # PostgreSQL never hears of it) keeps its locks until the server's own keepalives notice, two hours by default;
    # the history stamp's lock refused every write of the node as "busy" meanwhile (tests/system/
    # test_database_outage.py). None of ours waits between two statements of a transaction for anywhere near 30 s.
    "options": "-c idle_in_transaction_session_timeout=30000",
}


def database_from_url(url: str, name: str = "DATABASE_URL") -> dict:
    """Turn ``postgresql://user:pass@host:port/db`` or ``sqlite:///path`` into a Django DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(parsed.path[1:])}
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(
            f"{name} must start with postgresql:// or sqlite:///, got {parsed.scheme or 'nothing'}://"
        )
    if not parsed.path.strip("/"):
        raise ImproperlyConfigured(f"{name} must name a database, e.g. postgresql://user@127.0.0.1:5432/bms")
    options = {**SILENT_DATABASE_LIMITS, **{key: values[-1] for key, values in parse_qs(parsed.query).items()}}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.strip("/")),
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        "OPTIONS": options,
        # Not persistent: Daphne runs each request's sync part on a thread of its own, and persistent
        # connections stayed open per thread until PostgreSQL ran out of them under load (bench/stress.py);
        # the production settings pool them instead. The engine's one database thread keeps its connection
        # for as long as it works (bms.engine.store.drop_broken_connections).
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": True,
    }
