"""A private ``redis-server`` for tests and benches that stop a node's Redis (an outage) and start it again."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from tests.support.net import free_port, wait_for_port


class RedisServer:
    """A private ``redis-server`` on a fixed loopback port that can be killed and started again."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_dir / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(self.log_path)),
            ],
        )
        wait_for_port(self.port, 20)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        """Kill it for good (the same as :meth:`kill`; named for clean-up code)."""
        self.kill()
