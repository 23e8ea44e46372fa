"""A node whose engine cannot start says why and exits non-zero (so a supervisor restarts it)."""

import os
import subprocess
import sys

import pytest

from tests.support.net import free_port
from tests.support.processes import ROOT

pytestmark = pytest.mark.system


@pytest.mark.parametrize("command", [["runbms"], ["runengine"]])
def test_an_unreachable_database_stops_the_node_with_a_clear_error(command):
    if command == ["runbms"]:
        command = ["runbms", "--port", str(free_port())]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bms.settings.embedded",
        "DATABASE_URL": "postgresql://x@127.0.0.1:1/bms",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "the engine could not start" in result.stderr
    assert "127.0.0.1" in result.stderr and "port 1" in result.stderr
