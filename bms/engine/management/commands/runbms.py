"""``python manage.py runbms``: web (Daphne) and engine in one process, the embedded shape.

The engine runs as tasks on Daphne's own asyncio loop, so the in-memory
channel layer connects them without a broker.
"""

import asyncio
import logging

import daphne.server
from channels.routing import get_default_application
from django.core.management.base import BaseCommand, CommandError
from twisted.internet import defer, reactor

from bms.node import Node

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run web manager, websocket endpoint and engine in one process."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
        parser.add_argument("--no-engine", action="store_true", help="web only (the engine runs elsewhere)")

    def handle(self, *args, host: str, port: int, no_engine: bool, **options) -> None:
        engine = None if no_engine else Node()
        started: list[asyncio.Future] = []
        failure: list[BaseException] = []

        def start_engine() -> None:
            future = asyncio.ensure_future(engine.start())
            future.add_done_callback(stop_if_engine_failed)
            started.append(future)

        def stop_if_engine_failed(future: asyncio.Future) -> None:
            # A node whose engine is not running must not look healthy: stop,
            # so that the supervisor (systemd, Docker) restarts it.
            if not future.cancelled() and future.exception() is not None:
                failure.append(future.exception())
                log.critical("the engine could not start: %s; stopping the node", future.exception())
                reactor.stop()

        def stop_engine():
            async def _stop() -> None:
                if started:
                    await asyncio.gather(*started, return_exceptions=True)
                if not failure:
                    await engine.stop()

            return defer.Deferred.fromFuture(asyncio.ensure_future(_stop()))

        if engine is not None:
            reactor.callWhenRunning(start_engine)
            reactor.addSystemEventTrigger("before", "shutdown", stop_engine)

        def ready() -> None:
            self.stdout.write(f"BMS node listening on http://{host}:{port}/ (Ctrl-C stops it)")
            self.stdout.flush()

        server = daphne.server.Server(
            application=get_default_application(),
            endpoints=[f"tcp:port={port}:interface={host}"],
            signal_handlers=True,
            ready_callable=ready,
            verbosity=0,
        )
        server.run()
        if failure:
            raise CommandError(f"the engine could not start: {failure[0]}")
