"""The node (engine and pair service) on its own event loop in its own thread, beside the web server's loop.

In the one-process shapes (``runbms``) the web server (Daphne: pages, API,
websockets, the live hub) and the node used to share one asyncio loop, so
500 websocket clients or a burst of API writes delayed polls and heartbeats
until the partner took over (issue 11). Here the node's tasks run on a loop
of their own: web work can delay them only by holding the GIL, which Python
hands over at least every ``sys.getswitchinterval()`` (ADR 0013).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

from bms.engine import tasks

log = logging.getLogger(__name__)


class NodeThread:
    """Builds a node with ``build()`` and runs it on a loop in a daemon thread named ``bms-engine``."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self.build = build
        self.node: Any = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="bms-engine", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                # a node stop that failed or did not finish in time leaves tasks behind: end them before the
                # async generators some of them are inside are closed
                self.loop.run_until_complete(tasks.end_tasks_left(tasks.LEFT_TASKS_GRACE_SECONDS))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    def start(self) -> concurrent.futures.Future:
        """Start the thread and the node; the future ends when the node has started (or failed to)."""
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self.loop)

    async def _start(self) -> None:
        node = self.build()
        await node.start()
        self.node = node  # only a started node is stopped (as before: a failed start leaves nothing to stop)

    def _waiting(self) -> str:
        """Each task still pending on the node's loop, with where it waits (from another thread: asked of the loop)."""

        def describe() -> str:
            lines = []
            for task in asyncio.all_tasks(self.loop):
                lines.append(f"  {task.get_name()}: {' -> '.join(_awaiting(task.get_coro()))}")
            return "\n".join(sorted(lines))

        future: concurrent.futures.Future = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(lambda: future.set_result(describe()))
        try:
            return future.result(2.0)
        except concurrent.futures.TimeoutError:
            return "  (the loop did not answer within 2 s)"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the node, then the loop and the thread (blocking: call it from a worker thread)."""
        if not self._thread.is_alive():
            return
        try:
            if self.node is not None:
                asyncio.run_coroutine_threadsafe(self.node.stop(), self.loop).result(timeout)
        except concurrent.futures.TimeoutError:
            log.error(
                "stopping the node did not finish within %g s; its tasks still waiting:\n%s", timeout, self._waiting()
            )
        except Exception:
            log.exception("stopping the node failed")
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout + tasks.LEFT_TASKS_GRACE_SECONDS)  # the thread's end may cancel what is left


def _awaiting(coro: Any) -> list[str]:
    """Where a suspended coroutine waits: each coroutine of its await chain as ``file:line function``."""
    found = []
    while coro is not None and len(found) < 12:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            found.append(f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return found or [repr(coro)]
