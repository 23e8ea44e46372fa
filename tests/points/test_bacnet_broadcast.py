"""Broadcast Who-Is across a real link: two network namespaces joined by a veth pair (needs root).

The simulated building runs in one namespace with its BACnet device on
192.0.2.1/24 port 47808; ``manage.py bacnet discover`` runs in the other
with no address given, so it finds its interface, broadcasts to
192.0.2.255:47808 and must hear the I-Am. TEST-NET-1 addresses only; the
namespaces have random names and are always deleted.
"""

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@pytest.fixture
def namespaces():
    suffix = uuid.uuid4().hex[:8]
    device_ns, client_ns = f"bmsbacd{suffix}", f"bmsbacc{suffix}"
    try:
        ip("netns", "add", device_ns)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        pytest.skip(f"cannot create a network namespace here (ip netns add: {detail.strip()})")
    try:
        ip("netns", "add", client_ns)
        ip(
            "link",
            "add",
            f"vd{suffix}",
            "netns",
            device_ns,
            "type",
            "veth",
            "peer",
            "name",
            f"vc{suffix}",
            "netns",
            client_ns,
        )
        ip("-n", device_ns, "addr", "add", "192.0.2.1/24", "brd", "+", "dev", f"vd{suffix}")
        ip("-n", client_ns, "addr", "add", "192.0.2.2/24", "brd", "+", "dev", f"vc{suffix}")
        for ns, link in ((device_ns, f"vd{suffix}"), (client_ns, f"vc{suffix}")):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", link, "up")
        yield device_ns, client_ns
    finally:
        for ns in (device_ns, client_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_broadcast_who_is_finds_the_device_in_another_namespace(namespaces):
    device_ns, client_ns = namespaces
    simulator = subprocess.Popen(
        ["ip", "netns", "exec", device_ns, sys.executable, "-m", "drivers.simulator", "--host", "192.0.2.1",
         "--port", "0", "--bacnet-address", "192.0.2.1/24:47808", "--bacnet-instance", "1101"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = [simulator.stdout.readline(), simulator.stdout.readline()]
        assert lines[1] == "simulated building: BACnet/IP device 1101 on 192.0.2.1:47808\n", lines
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bms.settings.embedded"}  # listing needs no database
        found = subprocess.run(
            ["ip", "netns", "exec", client_ns, sys.executable, "manage.py", "bacnet", "discover", "--wait", "2"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert found.returncode == 0, found.stderr
        assert re.search(r"device 1101 at 192\.0\.2\.1:47808 \(vendor 999\): 11 objects", found.stdout), found.stdout
        assert "analog-input:1" in found.stdout and "chw_supply_temp" in found.stdout
    finally:
        simulator.terminate()
        try:
            simulator.wait(5)
        except subprocess.TimeoutExpired:
            simulator.kill()
            simulator.wait()
        simulator.stdout.close()
