"""Real processes for system tests: the simulated building and a BMS node in the production shape.

Each node gets its own PostgreSQL database and its own channel prefix on
the shared Redis, so tests never see each other's traffic.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg

from drivers.simulator.launch import SimulatorProcess
from tests.support import databases, services
from tests.support.net import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def spawn_node(
    web_port: int, split: bool, env: dict[str, str], log_path: Path, new_session: bool = False
) -> list[subprocess.Popen]:
    """Start a node as in production: ``runbms`` alone, or (``split``) ``runengine`` plus ``runbms --no-engine``."""
    web = ["runbms", "--port", str(web_port)]
    commands = [["runengine"], [*web, "--no-engine"]] if split else [web]
    return [
        subprocess.Popen(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
        for command in commands
    ]


def wait_or_kill(
    process: subprocess.Popen, name: str, log_path: Path, group: bool = False, seconds: float = 10.0
) -> None:
    """Wait for a process told to stop; one still running after ``seconds`` has its threads' stacks written to its
    log (``manage.py`` dumps them on SIGUSR1) and is killed, and the test output says so (a node must stop on
    SIGINT or SIGTERM within 2 s: a slow stop is a finding, not noise)."""
    try:
        process.wait(seconds)
        return
    except subprocess.TimeoutExpired:
        pass

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:  # the process leads a session of its own: its children too
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)

    send(signal.SIGUSR1)
    time.sleep(0.5)
    print(f"WARNING: {name} (pid {process.pid}) did not stop within {seconds:g} s; stacks at the end of {log_path}")
    send(signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def paused(process: subprocess.Popen):
    """SIGSTOP a process (a device, a witness) for the block; SIGCONT it on leaving, also on failure.

    A frozen process keeps its sockets: what is sent to it waits in its kernel buffer until it goes on.
    """
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)


class Simulator(SimulatorProcess):
    """``python -m drivers.simulator`` on an ephemeral port (``write_log``: its log of received writes)."""

    def __init__(self, write_log: Path | None = None) -> None:
        self.write_log = write_log
        super().__init__(*(["--write-log", str(write_log)] if write_log else []))


class Node:
    """One BMS node (``manage.py runbms``) in the production shape on its own database."""

    def __init__(self, modbus_port: int, name: str = "main", poll_interval: float = 0.2, split: bool = False) -> None:
        self.name = name
        self.split = split  # production layout: engine and web in separate processes
        self.db_name = f"bms_sys_{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = ROOT / "var" / "test-logs" / f"{self.db_name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bms.settings.production",
            "DJANGO_SECRET_KEY": "system-test-key",
            "DATABASE_URL": services.database_url(self.db_name),
            "REDIS_URL": services.REDIS_URL,
            "BMS_CHANNEL_PREFIX": f"t{uuid.uuid4().hex[:8]}",
            "BMS_NODE_NAME": name,
            "BMS_NODE_HEALTH_POINTS": "off",  # only the devices each test creates
            "BMS_PUBLISH_MIN_INTERVAL": "0.02",
            # plain HTTP on loopback, with the demo operator (production refuses both by default: docs/security.md)
            "BMS_SECURE_TRANSPORT": "0",
            "BMS_ALLOW_DEMO_USER": "1",
        }
        # a copy of the session's migrated database, loaded in one process (each manage.py start costs seconds)
        databases.create_migrated(self.db_name)
        databases.load_demo(self.env, modbus_port, poll_interval, users=(("viewer", "viewer-pass-1"),))
        self.processes: list[subprocess.Popen] = []

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self) -> None:
        self.processes.extend(spawn_node(self.port, self.split, self.env, self.log_path))
        wait_for_port(self.port, 30)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            wait_or_kill(process, f"node on port {self.port}", self.log_path)
        self.processes.clear()

    def drop(self) -> None:
        self.stop()
        with psycopg.connect(services.admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def session(self, username: str = "demo", password: str = "demo") -> HttpSession:
        return HttpSession(self.base_url, username, password)


class HttpSession:
    """A logged-in browser-like HTTP session (cookies + CSRF) built on urllib."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.opener.open(f"{base_url}/login/").read()
        body = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": self.csrf})
        request = urllib.request.Request(
            f"{base_url}/login/", data=body.encode(), headers={"Referer": f"{base_url}/login/"}
        )
        response = self.opener.open(request)
        if "/login/" in response.geturl():
            raise PermissionError(f"login as {username} failed")

    @property
    def csrf(self) -> str:
        return next(cookie.value for cookie in self.jar if cookie.name == "csrftoken")

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.jar)

    def get_json(self, path: str) -> tuple[int, dict]:
        return self._call(urllib.request.Request(f"{self.base_url}{path}"))

    def post_json(self, path: str, payload: object) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "X-CSRFToken": self.csrf, "Referer": self.base_url + "/"},
            method="POST",
        )
        return self._call(request)

    def _call(self, request: urllib.request.Request) -> tuple[int, dict]:
        try:
            response = self.opener.open(request, timeout=15)
            return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)
