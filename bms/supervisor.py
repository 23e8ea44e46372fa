"""``runbms --web-workers N``: one node as N + 1 processes, the engine and N web workers on one listening socket.

A process of its own is the only isolation CPython gives from CPU-hungry
neighbours: in one process the engine's thread still waits for the GIL while
the web threads render pages and fan out frames (ADR 0013). Here the engine
and pair service run in ``manage.py runengine`` and each web worker runs
``manage.py runbms --no-engine --fd F`` on the listening socket this
supervisor opened, so the kernel spreads connections over the workers. They
meet through the channel layer, which must therefore be shared between
processes (Redis: the production settings).

The supervisor forwards SIGINT/SIGTERM to its children and waits for them;
if one of them ends on its own it stops the others and exits non-zero, so
that systemd or Docker restarts the whole node. Children die with it
(``PR_SET_PDEATHSIG``) even if it is killed with SIGKILL.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
STOP_GRACE_SECONDS = 10.0


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies, however it dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: children then outlive a SIGKILLed supervisor, as any process group would


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = socket.create_server((host, port), family=family, backlog=2048)
    server.set_inheritable(True)
    return server


def run_processes(
    manage_py: Path, host: str, port: int, web_workers: int, announce: Callable[[str], None] = print
) -> int:
    """Start the engine and ``web_workers`` web processes; return the exit status when they are done."""
    server = listening_socket(host, port)
    fd = server.fileno()
    python = [sys.executable, str(manage_py)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # children's logs reach the node's output as they are written
    children = [subprocess.Popen([*python, "runengine"], env=env, preexec_fn=_die_with_parent)]
    children += [
        subprocess.Popen(
            [*python, "runbms", "--no-engine", "--fd", str(fd), "--host", host, "--port", str(port)],
            pass_fds=(fd,),
            env=env,
            preexec_fn=_die_with_parent,
        )
        for _ in range(web_workers)
    ]
    server.close()  # the workers hold it now
    announce(f"BMS node on http://{host}:{port}/: engine pid {children[0].pid}, {web_workers} web worker(s)")
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    status = 0
    while any(child.poll() is None for child in children):
        if not stopping:
            ended = [child for child in children if child.poll() is not None]
            if ended:
                log.critical(
                    "%s ended (exit %s); stopping the node so that its supervisor restarts it",
                    " ".join(ended[0].args[2:3]),
                    ended[0].returncode,
                )
                status = 1
                stop(signal.SIGTERM, None)
        time.sleep(0.1)
        if stopping:
            _wait_or_kill(children)
    return status


def _wait_or_kill(children: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("process %d did not stop in %.0f s: killed", child.pid, STOP_GRACE_SECONDS)
            child.kill()
            child.wait()


def manage_py_path() -> Path:
    from django.conf import settings

    return Path(settings.BASE_DIR) / "manage.py"


def shared_layer_or_reason() -> str:
    """Empty if the channel layer reaches other processes; else why ``--web-workers`` cannot be used."""
    from channels.layers import InMemoryChannelLayer, get_channel_layer

    if isinstance(get_channel_layer(), InMemoryChannelLayer):
        return (
            "--web-workers needs a channel layer shared between processes (Redis: DJANGO_SETTINGS_MODULE="
            "bms.settings.production); the in-memory layer of this shape lives in one process"
        )
    return ""
