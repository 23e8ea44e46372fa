"""``python manage.py rundemo``: simulator + migrated database + demo building + one node.

Everything it starts stops with Ctrl-C.
"""

import subprocess
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from bms.net import wait_for_port


class Command(BaseCommand):
    help = "Start the simulated building and one BMS node with the demo configuration."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="web port (default 8000)")
        parser.add_argument("--modbus-port", type=int, default=15020, help="simulator port (default 15020)")

    def handle(self, *args, port: int, modbus_port: int, **options) -> None:
        (settings.BASE_DIR / "var").mkdir(exist_ok=True)
        simulator = subprocess.Popen(
            [sys.executable, "-m", "drivers.simulator", "--port", str(modbus_port)], cwd=settings.BASE_DIR
        )
        try:
            try:
                wait_for_port(modbus_port, 15, alive=lambda: simulator.poll() is None)
            except (RuntimeError, TimeoutError) as exc:
                raise CommandError(f"the simulator did not start ({exc}); is port {modbus_port} free?") from exc
            call_command("migrate", interactive=False, verbosity=0)
            call_command("loaddemo", modbus_port=modbus_port, demo_user=True)
            self.stdout.write(self.style.SUCCESS(f"\n  Open http://127.0.0.1:{port}/ and log in as demo / demo\n"))
            call_command("runbms", port=port)
        finally:
            simulator.terminate()
            try:
                simulator.wait(5)
            except subprocess.TimeoutExpired:
                simulator.kill()
