"""Start ``python -m drivers.simulator`` as a child process and learn its ports (tests, benches, demo).

The simulator prints one line per protocol as it starts (Modbus first, then
BACnet when asked for); this reads them, so callers can ask for port 0 and
get the ports the system picked.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
MODBUS_LINE = re.compile(r"simulated building: Modbus TCP on [\d.]+:(\d+)\s*")
BACNET_LINE = re.compile(r"simulated building: BACnet/IP device (\d+) on ([\d.]+):(\d+)\s*")


def stop_process(process: subprocess.Popen, grace: float = 5.0) -> None:
    """Terminate a child, kill it if it does not stop within ``grace`` seconds, and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SimulatorProcess:
    """The simulated building in a subprocess; ``modbus_port`` (and ``bacnet_*`` with ``bacnet=True``)."""

    def __init__(self, *extra: str, bacnet: bool = False, host: str = "127.0.0.1", stderr: IO | None = None) -> None:
        args = [sys.executable, "-m", "drivers.simulator", "--host", host, "--port", "0"]
        if bacnet:
            args += ["--bacnet-port", "0"]
        self.process = subprocess.Popen([*args, *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            self.lines = [self.process.stdout.readline()]
            modbus = MODBUS_LINE.fullmatch(self.lines[0])
            bacnet_match = None
            if bacnet:
                self.lines.append(self.process.stdout.readline())
                bacnet_match = BACNET_LINE.fullmatch(self.lines[1])
            if not modbus or (bacnet and not bacnet_match):
                raise RuntimeError(f"the simulator did not report its ports: {self.lines!r}")
        except BaseException:
            self.stop()
            raise
        self.modbus_port = int(modbus.group(1))
        self.bacnet_instance = int(bacnet_match.group(1)) if bacnet_match else None
        self.bacnet_port = int(bacnet_match.group(3)) if bacnet_match else None

    @property
    def port(self) -> int:
        return self.modbus_port

    def stop(self) -> None:
        stop_process(self.process)
        if self.process.stdout:
            self.process.stdout.close()
