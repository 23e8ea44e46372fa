"""Commissioning tools that talk to devices (``poll --once``, ``bacnet priority``) run only on the active node.

This process plays node ``backup`` (or ``main``) of a pair through its node
state row; the device is the simulated building's BACnet device in a
subprocess, which counts nothing we could miss: a refused command must not
even read it, and ``--force`` reads it with a warning.
"""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from bms.points.models import Device, Point
from tests.redundancy.pairweb import as_backup, as_main  # noqa: F401  (fixtures)


@pytest.fixture
def chiller(db, simulator) -> Point:
    device = Device.objects.create(
        name="chiller",
        driver="bacnet",
        host="127.0.0.1",
        port=simulator.bacnet_port,
        options={"device_instance": 1001},
    )
    return Point.objects.create(device=device, name="chiller.chw_setpoint", address="av:1", data_type="float32")


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


REFUSAL = "This node (backup) is standby: only the active node talks to devices; run it on the active node main"


@pytest.mark.parametrize("command", [("poll", "--once"), ("bacnet", "priority", "chiller.chw_setpoint")])
def test_a_standby_refuses_and_force_overrides_with_a_warning(as_backup, chiller, command):  # noqa: F811
    as_backup.set_role("standby")
    with pytest.raises(CommandError) as refused:
        run(*command, "--format", "json")
    assert str(refused.value) == f"{REFUSAL}. An engineer may override this with --force."
    out, err = run(*command, "--format", "json", "--force")
    assert f"WARNING: {REFUSAL}. --force given: talking to the devices anyway." in err
    answer = json.loads(out)
    if command[0] == "poll":
        assert answer == [
            {"device": "chiller", "point": "chiller.chw_setpoint", "value": 7.0, "quality": "good", "error": None}
        ]
    else:
        assert answer["point"] == "chiller.chw_setpoint" and answer["relinquish_default"] == 7.0


def test_a_node_that_does_not_know_its_role_refuses(as_backup, chiller):  # noqa: F811
    as_backup.set_role("active", age=3600)  # the engine stopped writing its row an hour ago
    with pytest.raises(
        CommandError, match=r"This node \(backup\) does not know its role: only the active node talks to devices"
    ):
        run("poll", "--once")


def test_the_active_node_of_a_pair_runs_them_until_it_turns_standby(as_main, chiller):  # noqa: F811
    as_main.set_role("active")
    out, err = run("poll", "--once", "--format", "json")
    assert json.loads(out)[0]["quality"] == "good" and err == ""
    out, err = run("bacnet", "priority", "chiller.chw_setpoint", "--format", "json")
    assert json.loads(out)["active_priority"] is None and err == ""
    as_main.set_role("standby")  # a switchover: the same commands now belong to backup
    with pytest.raises(CommandError, match=r"This node \(main\) is standby: .* run it on the active node backup\."):
        run("bacnet", "priority", "chiller.chw_setpoint")
