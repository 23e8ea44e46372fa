"""``python manage.py rundemo``: the simulated building and a hot-standby pair (main :8000, backup :8001).

Each node is its own process with its own SQLite database under ``var/``
(embedded shape), talking to its partner over the sync link on loopback.
Stop a node (``kill $(cat var/main.pid)``) to watch the other take over;
``python manage.py rundemo --node main`` starts it again and it takes back
control. Ctrl-C stops everything this command started.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bms.net import wait_for_port

NODES = {
    # name: offset added to the web and sync ports
    "main": 0,
    "backup": 1,
}


class Command(BaseCommand):
    help = "Start the simulated building and a main/backup pair of BMS nodes with the demo configuration."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="main's web port; backup uses the next (8000)")
        parser.add_argument("--sync-port", type=int, default=8800, help="main's sync port; backup the next (8800)")
        parser.add_argument("--modbus-port", type=int, default=15020, help="simulator Modbus port (default 15020)")
        parser.add_argument("--bacnet-port", type=int, default=47901, help="simulator BACnet/IP UDP port (47901)")
        parser.add_argument("--node", choices=sorted(NODES), help="start only this node (to restart a stopped one)")
        parser.add_argument("--period-ms", type=int, default=1000, help="heartbeat period (default 1000)")

    def handle(self, *args, port: int, sync_port: int, modbus_port: int, bacnet_port: int, node: str | None, **opts):
        self.var = Path(settings.BASE_DIR) / "var"
        self.var.mkdir(exist_ok=True)
        self.port, self.sync_port, self.period_ms = port, sync_port, opts["period_ms"]
        self.bacnet_port = bacnet_port
        self.children: dict[str, subprocess.Popen] = {}
        try:
            if node is None:
                self._start_simulator(modbus_port)
            names = [node] if node else list(NODES)
            for name in names:
                self._prepare(name, modbus_port)
            for name in names:
                self._start_node(name)
            self._explain(names)
            self._supervise()
        finally:
            self._stop_all()

    # -- parts -----------------------------------------------------------------------------------------------------

    def _secret(self) -> str:
        # One secret per demo installation, shared by both nodes, never committed (var/ is ignored).
        path = self.var / "demo-pair.secret"
        if not path.exists():
            path.write_text(secrets.token_hex(24))
            path.chmod(0o600)
        return path.read_text().strip()

    def _env(self, name: str) -> dict[str, str]:
        offset = NODES[name]
        partner = next(other for other in NODES if other != name)
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bms.settings.embedded",
            "BMS_NODE_NAME": name,
            "BMS_PARTNER_NAME": partner,
            "BMS_SYNC_PORT": str(self.sync_port + offset),
            "BMS_PARTNER_ADDRESS": f"127.0.0.1:{self.sync_port + NODES[partner]}",
            "BMS_PUBLIC_URL": f"http://127.0.0.1:{self.port + offset}",
            "BMS_PARTNER_URL": f"http://127.0.0.1:{self.port + NODES[partner]}",
            "BMS_SYNC_SECRET": self._secret(),
            "BMS_HEARTBEAT_PERIOD_MS": str(self.period_ms),
        }

    def _manage(self, name: str, *args: str) -> None:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=settings.BASE_DIR,
            env=self._env(name),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise CommandError(f"{name}: manage.py {' '.join(args)} failed:\n{result.stderr or result.stdout}")

    def _start_simulator(self, modbus_port: int) -> None:
        simulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "drivers.simulator",
                "--port",
                str(modbus_port),
                "--bacnet-port",
                str(self.bacnet_port),
            ],
            cwd=settings.BASE_DIR,
        )
        self.children["simulator"] = simulator
        try:
            wait_for_port(modbus_port, 15, alive=lambda: simulator.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            raise CommandError(
                f"the simulator did not start ({exc}); are TCP port {modbus_port} and UDP port {self.bacnet_port} free?"
            ) from exc

    def _prepare(self, name: str, modbus_port: int) -> None:
        self.stdout.write(f"preparing {name} (var/{name}.sqlite3)")
        self._manage(name, "migrate", "--verbosity", "0")
        self._manage(
            name,
            "loaddemo",
            *("--modbus-port", str(modbus_port), "--bacnet-port", str(self.bacnet_port)),
            # --functions: the occupancy schedule and zone 1's temperature loop, so the demo runs itself (issue 12)
            *("--demo-user", "--functions", "--verbosity", "0"),
        )

    def _start_node(self, name: str) -> None:
        web_port = self.port + NODES[name]
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runbms", "--port", str(web_port)], cwd=settings.BASE_DIR, env=self._env(name)
        )
        self.children[name] = process
        (self.var / f"{name}.pid").write_text(str(process.pid))
        try:
            wait_for_port(web_port, 30, alive=lambda: process.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            raise CommandError(f"node {name} did not start ({exc}); is port {web_port} free?") from exc

    def _explain(self, names: list[str]) -> None:
        lines = [f"  {name:7s} http://127.0.0.1:{self.port + NODES[name]}/   (pid in var/{name}.pid)" for name in names]
        self.stdout.write(
            self.style.SUCCESS(
                "\n".join(
                    [
                        "",
                        *lines,
                        "  Log in as demo / demo. The Redundancy page shows which node is active.",
                        "  Stop the main:   kill $(cat var/main.pid)      (the backup takes over)",
                        "  Restart it:      .venv/bin/python manage.py rundemo --node main   (it takes back control)",
                        "",
                    ]
                )
            )
        )

    def _supervise(self) -> None:
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        reported: set[str] = set()
        try:
            while not stopping and any(p.poll() is None for p in self.children.values()):
                for name, process in self.children.items():
                    if process.poll() is not None and name not in reported:
                        reported.add(name)
                        self.stdout.write(self.style.WARNING(f"{name} stopped (exit status {process.returncode})"))
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass

    def _stop_all(self) -> None:
        for process in self.children.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.children.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
