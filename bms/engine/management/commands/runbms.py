"""``python manage.py runbms``: web (Daphne) and node (engine, pair service) in one process.

The node runs on its own event loop in its own thread (:mod:`bms.nodethread`,
ADR 0013), so web work never sits between a poll, a command or a heartbeat
and its loop. In the embedded shape the in-memory channel layer still
connects the two: the node reaches it through a bridge to the web loop
(:mod:`bms.layer_bridge`).
"""

import argparse
import asyncio
import logging

import daphne.server
from channels.layers import get_channel_layer
from channels.routing import get_default_application
from django.core.management.base import BaseCommand, CommandError
from twisted.internet import defer, reactor

from bms import supervisor
from bms.layer_bridge import layer_for_another_loop
from bms.node import Node
from bms.nodethread import NodeThread
from bms.realtime.hub import stop_hub

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run web manager, websocket endpoint and engine in one process."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
        parser.add_argument("--no-engine", action="store_true", help="web only (the engine runs elsewhere)")
        parser.add_argument(
            "--web-workers",
            type=int,
            default=0,
            metavar="N",
            help="run the engine in a process of its own and N web processes on the port (production settings; "
            "default 0: one process, the engine on its own thread)",
        )
        parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a web worker's inherited listening socket

    def handle(self, *args, host: str, port: int, no_engine: bool, web_workers: int, fd: int | None, **options) -> None:
        if web_workers < 0:
            raise CommandError("--web-workers must be 0 or more")
        if web_workers:
            reason = supervisor.shared_layer_or_reason()
            if reason:
                raise CommandError(reason)
            status = supervisor.run_processes(supervisor.manage_py_path(), host, port, web_workers, self.stdout.write)
            if status:
                raise CommandError("a process of the node ended; see the log above")
            return
        node_thread: NodeThread | None = None
        started: list[asyncio.Future] = []
        failure: list[BaseException] = []

        def start_engine() -> None:
            nonlocal node_thread
            web_loop = asyncio.get_event_loop()
            layer = layer_for_another_loop(get_channel_layer(), web_loop)
            node_thread = NodeThread(lambda: Node(channel_layer=layer, with_web=True))
            future = asyncio.wrap_future(node_thread.start())
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
                await stop_hub()
                if node_thread is not None:
                    await asyncio.get_running_loop().run_in_executor(None, node_thread.stop)

            return defer.Deferred.fromFuture(asyncio.ensure_future(_stop()))

        if not no_engine:
            reactor.callWhenRunning(start_engine)
        reactor.addSystemEventTrigger("before", "shutdown", stop_engine)

        def ready() -> None:
            self.stdout.write(f"BMS node listening on http://{host}:{port}/ (Ctrl-C stops it)")
            self.stdout.flush()

        server = daphne.server.Server(
            application=get_default_application(),
            endpoints=[f"fd:fileno={fd}" if fd is not None else f"tcp:port={port}:interface={host}"],
            signal_handlers=True,
            # Autobahn drops a handshake not finished within this many seconds; Daphne's 5 s default dropped clients
            # of a mass connect (500 screens after a restart) that would have been served a little later.
            websocket_handshake_timeout=20,
            ready_callable=ready,
            verbosity=0,
        )
        server.run()
        if failure:
            raise CommandError(f"the engine could not start: {failure[0]}")
