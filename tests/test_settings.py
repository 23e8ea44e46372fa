"""Production settings fail fast, naming what is missing or malformed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def check(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY"}}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "bms.settings.production", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "k"}, "DATABASE_URL"),
        ({"DJANGO_SECRET_KEY": "k", "DATABASE_URL": "postgresql://u@h/db"}, "REDIS_URL"),
        ({"DJANGO_SECRET_KEY": "k", "DATABASE_URL": "mysql://u@h/db", "REDIS_URL": "redis://h"}, "postgresql://"),
        (
            {"DJANGO_SECRET_KEY": "k", "DATABASE_URL": "postgresql://u@h/", "REDIS_URL": "redis://h"},
            "must name a database",
        ),
    ],
)
def test_missing_or_malformed_settings_stop_start_up_with_their_name(env, named):
    result = check(**env)
    assert result.returncode != 0
    assert named in result.stderr


def test_complete_production_settings_pass_the_checks():
    result = check(DJANGO_SECRET_KEY="k", DATABASE_URL="postgresql://u@127.0.0.1/db", REDIS_URL="redis://127.0.0.1")
    assert result.returncode == 0, result.stderr
