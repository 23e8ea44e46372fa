"""The engine's end when the node's own stop fails or does not finish: every task still running is ended, on the
engine thread of ``runbms`` and in the ``runengine`` process."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bms.nodethread import NodeThread


class _NodeThatWillNotStop:
    """A node whose stop hangs (as a node whose device never answers a cancelled request would), and which keeps a
    task iterating an async generator that is waiting inside its own ``await``, as a poller inside
    ``ModbusDriver.read_batches`` is while a request is on the wire."""

    def __init__(self) -> None:
        self.generator_closed = threading.Event()
        self.in_request = threading.Event()

    async def _answers(self):
        try:
            while True:
                self.in_request.set()
                await asyncio.sleep(3600)  # the request on the wire
                yield 1
        finally:
            self.generator_closed.set()

    async def _poll(self) -> None:
        async for _ in self._answers():
            pass

    async def start(self) -> None:
        self.task = asyncio.create_task(self._poll(), name="poll:stuck")

    async def stop(self) -> None:
        await asyncio.sleep(3600)


def _run_and_stop(node: _NodeThatWillNotStop, caplog) -> None:
    """Start ``node`` on a NodeThread, wait until its poll is inside its request, stop it with a short timeout."""
    thread = NodeThread(lambda: node)
    thread.start().result(5)
    assert node.in_request.wait(5)
    with caplog.at_level(logging.ERROR):
        thread.stop(timeout=0.5)
    assert not thread._thread.is_alive(), "the engine thread did not end"


def test_a_node_whose_stop_hangs_has_its_tasks_ended_and_no_generator_left_running(caplog):
    node = _NodeThatWillNotStop()
    _run_and_stop(node, caplog)
    assert node.generator_closed.is_set(), "the generator's cleanup never ran"
    messages = [record.getMessage() for record in caplog.records]
    assert not any("already running" in message for message in messages), messages
    assert any("did not finish within" in message for message in messages), messages


@pytest.mark.parametrize("swallows", [1, 3])
def test_a_task_that_swallows_cancellations_is_cancelled_again_until_it_ends(swallows, caplog):
    """Python 3.11's ``wait_for`` (inside pymodbus) can swallow a cancellation: the shutdown asks again."""
    ended = threading.Event()

    class Node(_NodeThatWillNotStop):
        async def _stubborn(self) -> None:
            left = swallows
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    if left == 0:
                        ended.set()
                        raise
                    left -= 1

        async def start(self) -> None:
            await super().start()
            self.stubborn = asyncio.create_task(self._stubborn(), name="stubborn")

    node = Node()
    _run_and_stop(node, caplog)
    assert ended.is_set(), "the task that swallowed cancellations was left pending"


def test_a_task_that_never_ends_is_named_in_an_error_and_the_thread_still_ends(monkeypatch, caplog):
    monkeypatch.setattr("bms.engine.tasks.LEFT_TASKS_GRACE_SECONDS", 0.5)

    class Node(_NodeThatWillNotStop):
        async def _deaf(self) -> None:
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass  # never ends

        async def start(self) -> None:
            await super().start()
            self.deaf = asyncio.create_task(self._deaf(), name="deaf-task")

    node = Node()
    _run_and_stop(node, caplog)
    assert node.generator_closed.is_set(), "the tasks that could end did not"
    errors = [record.getMessage() for record in caplog.records if "after being cancelled" in record.getMessage()]
    assert len(errors) == 1 and "deaf-task" in errors[0], errors


_RUNENGINE_WITH_A_FAILED_STOP = """
import asyncio, os, signal, sys
import django
django.setup()
from bms.engine.management.commands import runengine

class Node:
    async def _answers(self):
        try:
            while True:
                await asyncio.sleep(3600)  # the request on the wire
                yield 1
        finally:
            print("generator closed", flush=True)

    async def _poll(self):
        async for _ in self._answers():
            pass

    async def _stubborn(self):
        left = 2
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if left == 0:
                    print("stubborn ended", flush=True)
                    raise
                left -= 1

    def __init__(self):
        self.engine = type("Engine", (), {"pollers": {}})()

    async def start(self):
        self.tasks = [asyncio.create_task(self._poll()), asyncio.create_task(self._stubborn())]
        asyncio.get_running_loop().call_later(0.3, os.kill, os.getpid(), signal.SIGTERM)

    async def stop(self):
        raise RuntimeError("the stop failed")

runengine.Node = Node
asyncio.run(runengine.Command()._main())
print("exited", flush=True)
"""


def test_runengine_ends_what_a_failed_node_stop_left_behind(tmp_path):
    """The production engine process: asyncio.run's own clean-up cancels once, then waits without end for a task
    that swallowed it (a poller inside pymodbus' wait_for); the command ends such tasks itself."""
    root = Path(__file__).resolve().parents[2]
    script = tmp_path / "runengine_failed_stop.py"
    script.write_text(_RUNENGINE_WITH_A_FAILED_STOP)
    env = {**os.environ, "PYTHONPATH": str(root), "DJANGO_SETTINGS_MODULE": "bms.settings.test"}
    try:
        done = subprocess.run(
            [sys.executable, str(script)], cwd=root, env=env, capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"runengine did not exit after its node stop failed: {exc.stdout!r}")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "generator closed" in lines and "stubborn ended" in lines and lines[-1] == "exited", done.stdout
    assert "already running" not in done.stderr, done.stderr[-2000:]
