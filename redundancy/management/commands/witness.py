"""``python manage.py witness``: run the pair's witness (see :mod:`redundancy.witness`)."""

import asyncio
import contextlib
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from redundancy.config import MIN_SECRET_LENGTH
from redundancy.witness import Witness


class Command(BaseCommand):
    help = "Run the witness that both nodes of a pair consult before a takeover."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8899, help="listen port (default 8899; 0 picks a free one)")
        parser.add_argument(
            "--nodes", default="main,backup", help="node names allowed to connect (default main,backup)"
        )
        parser.add_argument(
            "--period-ms", type=int, default=200, help="how often it reports to the nodes (default 200)"
        )

    def handle(self, *args, host: str, port: int, nodes: str, period_ms: int, **options) -> None:
        secret = settings.BMS_SYNC_SECRET
        if len(secret) < MIN_SECRET_LENGTH:
            raise CommandError(f"BMS_SYNC_SECRET must be the pair's secret (at least {MIN_SECRET_LENGTH} characters)")
        names = {name.strip() for name in nodes.split(",") if name.strip()}
        asyncio.run(self._main(Witness(host, port, secret.encode(), names, period_ms / 1000)))

    async def _main(self, witness: Witness) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await witness.start()
        self.stdout.write(f"witness listening on port {witness.port} for {', '.join(sorted(witness.nodes))}")
        self.stdout.flush()
        try:
            await stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await witness.stop()
