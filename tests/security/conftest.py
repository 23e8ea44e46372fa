"""Fixtures of the security tests (issue 13): users per role, a production-shape ``manage.py`` in a subprocess."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User

from bms.accounts import roles
from tests.redundancy.pairweb import as_backup, as_main  # noqa: F401  (this process plays a pair node)
from tests.support.fixtures import node, simulator  # noqa: F401  (a real node for the browser and flood tests)

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "security-test-pass-1"


def production_env(**extra: str) -> dict[str, str]:
    """The environment of a production node as an operator would set it (no BMS_* of the test run's)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BMS_", "DJANGO_")) and k != "DATABASE_URL"}
    return {
        **clean,
        "DJANGO_SETTINGS_MODULE": "bms.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
        # never connected to by the commands these tests run (check, settings dump, a refused loaddemo)
        "DATABASE_URL": "postgresql://bms@127.0.0.1:1/bms",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        **extra,
    }


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def make_user(db):
    def make(username: str, role: str | None = roles.OPERATOR) -> User:
        roles.sync_roles()
        user = User.objects.create_user(username, password=PASSWORD)
        if role is not None:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make
