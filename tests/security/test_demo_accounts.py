"""Demo accounts never in production (issue 13, item 7).

Finding: `loaddemo --demo-user` created demo/demo with write permission under production settings, and
docker/compose.yaml did so. Now production refuses it, compose makes an operator with a generated password
printed once, and `make demo` (embedded settings) still has its demo operator.
"""

from __future__ import annotations

import io
import re

import pytest
import yaml
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from tests.security.conftest import ROOT, manage, production_env


def test_loaddemo_demo_user_is_refused_under_production_settings():
    result = manage("loaddemo", "--demo-user", env=production_env())
    assert result.returncode != 0
    assert "--demo-user is refused" in result.stderr
    assert "createoperator" in result.stderr
    # refused before anything is loaded: this environment's database does not even exist
    assert "connection" not in result.stderr.lower()


def test_loaddemo_demo_user_is_refused_by_settings_not_by_module_name(settings, db):
    settings.BMS_DEMO_ACCOUNTS = False
    with pytest.raises(CommandError, match="refused"):
        call_command("loaddemo", modbus_port=1, demo_user=True, verbosity=0)
    assert not User.objects.filter(username="demo").exists()


def test_make_demo_keeps_its_demo_operator(tmp_path):
    """What `make demo` (rundemo) runs for each node, in the embedded shape on a fresh SQLite database."""
    env = production_env(DJANGO_SETTINGS_MODULE="bms.settings.embedded", DATABASE_URL=f"sqlite:///{tmp_path}/n.db")
    assert manage("migrate", "--verbosity", "0", env=env).returncode == 0
    loaded = manage("loaddemo", "--modbus-port", "15020", "--demo-user", env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert "demo operator: demo / demo" in loaded.stdout
    check = "from django.contrib.auth import authenticate; print(authenticate(username='demo', password='demo'))"
    assert manage("shell", "-c", check, env=env).stdout.strip().splitlines()[-1] == "demo"


def test_createoperator_prints_a_generated_password_once(db):
    out = io.StringIO()
    call_command("createoperator", stdout=out)
    match = re.search(r"created operator operator; password \(shown once, write it down\): (\S+)", out.getvalue())
    assert match, out.getvalue()
    password = match.group(1)
    assert len(password) >= 16 and password != "demo"
    user = User.objects.get(username="operator")
    assert user.groups.filter(name="operator").exists() and user.has_perm("points.write_point")
    # the password works through the real login page (throttled backend included)
    browser = Client()
    response = browser.post("/login/", {"username": "operator", "password": password})
    assert response.status_code == 302 and response["Location"] == "/points/"
    again = io.StringIO()
    call_command("createoperator", stdout=again)
    assert password not in again.getvalue() and "unchanged and not shown" in again.getvalue()
    assert authenticate(username="operator", password=password) == user


def test_createoperator_takes_the_password_from_the_environment(db, monkeypatch):
    monkeypatch.setenv("BMS_OPERATOR_PASSWORD", "short")
    with pytest.raises(CommandError, match="BMS_OPERATOR_PASSWORD is not acceptable"):
        call_command("createoperator", stdout=io.StringIO())
    assert not User.objects.filter(username="operator").exists()
    monkeypatch.setenv("BMS_OPERATOR_PASSWORD", "a-long-site-password-7")
    out = io.StringIO()
    call_command("createoperator", "--username", "olga", "--role", "engineer", stdout=out)
    assert "a-long-site-password-7" not in out.getvalue()
    assert User.objects.get(username="olga").check_password("a-long-site-password-7")


def test_the_compose_pair_creates_no_demo_account():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text(encoding="utf-8"))
    for name in ("main", "backup"):
        command = " ".join(compose["services"][name]["command"])
        assert "--demo-user" not in command
    assert "manage.py createoperator" in " ".join(compose["services"]["main"]["command"])
