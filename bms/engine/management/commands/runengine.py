"""``python manage.py runengine``: the engine alone (production shape, next to Daphne and Celery)."""

import asyncio
import contextlib
import signal

from django.core.management.base import BaseCommand, CommandError

from bms.engine import tasks
from bms.node import Node


class Command(BaseCommand):
    help = "Run the real-time engine: poll devices, keep the process image, publish, execute commands."

    def handle(self, *args, **options) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        node = Node()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await node.start()
        except Exception as exc:
            raise CommandError(f"the engine could not start: {exc}") from exc
        self.stdout.write(f"engine running ({len(node.engine.pollers)} device(s)); Ctrl-C stops it", ending="\n")
        self.stdout.flush()
        try:
            await stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await node.stop()
            # what a failed stop left behind ends here, not in asyncio.run's clean-up (one cancel, then no limit)
            await tasks.end_tasks_left(tasks.LEFT_TASKS_GRACE_SECONDS)
