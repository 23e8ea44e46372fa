"""Node databases for system tests: migrated once per test session, cloned per node, loaded in one process.

Every ``manage.py`` run pays Django's start-up (seconds on a loaded two-core
machine) before it does anything, and ``migrate`` itself is the slowest step
of preparing a node's database. So the session migrates one database once
(the production settings, node health points off, as every test node has
them) and each node's database is a PostgreSQL clone of it (``CREATE
DATABASE ... TEMPLATE``, a file copy). What differs between nodes (the demo
building on the node's simulator port, its poll interval, extra users) is
then loaded in a single ``manage.py shell`` run in the node's own
environment, with the same management commands a site runs.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psycopg

from tests.support import services

ROOT = Path(__file__).resolve().parents[2]

_lock = threading.Lock()
_migrated: str | None = None


def admin(sql: str) -> None:
    """Run ``sql`` on the server's ``postgres`` database (CREATE/DROP DATABASE)."""
    with psycopg.connect(services.admin_conninfo(), autocommit=True) as conn:
        conn.execute(sql)


def manage(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    """``manage.py *args`` in ``env``; its output, or RuntimeError with both streams."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args[:1])} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _migrate_env(db_name: str) -> dict[str, str]:
    # The environment of a test node, minus what names one node: migrate's result does not depend on it.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("BMS_") or key in ("BMS_TEST_DATABASE_URL", "BMS_TEST_REDIS_URL")
    }
    return env | {
        "DJANGO_SETTINGS_MODULE": "bms.settings.production",
        "DJANGO_SECRET_KEY": "migrate-template-key",
        "DATABASE_URL": services.database_url(db_name),
        "REDIS_URL": services.REDIS_URL,
        "BMS_NODE_HEALTH_POINTS": "off",  # as on every test node: only the devices each test creates
        "BMS_SECURE_TRANSPORT": "0",
    }


def migrated() -> str:
    """The name of this session's migrated (empty) database; made on first use, dropped when the session ends."""
    global _migrated
    with _lock:
        if _migrated is None:
            name = f"bms_migrated_{uuid.uuid4().hex[:10]}"
            admin(f'CREATE DATABASE "{name}"')
            try:
                manage(_migrate_env(name), "migrate", "--verbosity", "0")
            except BaseException:
                admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                raise
            atexit.register(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            _migrated = name
        return _migrated


def create_migrated(name: str) -> None:
    """Create database ``name`` as a copy of the session's migrated database."""
    admin(f'CREATE DATABASE "{name}" TEMPLATE "{migrated()}"')


def load_demo(
    env: dict[str, str],
    modbus_port: int,
    poll_interval: float = 1.0,
    users: tuple[tuple[str, str], ...] = (),
    migrate: bool = False,
    **options: object,
) -> str:
    """``[migrate;] loaddemo --modbus-port .. --poll-interval .. --demo-user [options]``, then plain ``users``.

    One ``manage.py shell`` process runs the same management commands (``call_command``) that would otherwise
    be one process each; its output is returned.
    """
    command = {"modbus_port": modbus_port, "poll_interval": poll_interval, "demo_user": True, **options}
    code = (
        "from django.core.management import call_command; from django.contrib.auth.models import User; "
        + ("call_command('migrate', verbosity=0); " if migrate else "")
        + f"call_command('loaddemo', **{command!r}); "
        f"[User.objects.create_user(name, password=password) for name, password in {list(users)!r}]"
    )
    return manage(env, "shell", "-c", code)
