"""Real receivers on loopback for the notification tests: an aiosmtpd SMTP sink and an http.server webhook.

Both count what they accept (and what they refused), keyed by the
notification key each message carries, so a test asserts how many times
each notification arrived: once, or twice with the same key, never zero.
Each can be told to fail (SMTP 451 / HTTP 500) a number of times, or be
stopped and started again on the same port. The webhook receiver can also
*hold* a path: it counts a request there as it arrives and answers only
when released, so a test can act while a sender is mid-delivery (the
receiver has the message, the sender has not recorded it yet).
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.net import free_port


@dataclass
class Mail:
    """One email the sink accepted."""

    to: list[str]
    message_id: str
    key: str
    subject: str
    body: str


@dataclass
class SmtpSink:
    """An aiosmtpd server on loopback that keeps every accepted message; it can refuse or be stopped."""

    port: int = field(default_factory=free_port)
    mails: list[Mail] = field(default_factory=list)
    refused: int = 0
    fail_next: int = 0  # answer 451 to this many messages
    refuse_rcpt: set[str] = field(default_factory=set)  # answer 550 to these recipients
    controller: Controller | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list) -> str:
        if address in self.refuse_rcpt:
            with self.lock:
                self.refused += 1
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                self.refused += 1
                return "451 4.3.0 try again later"
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.mails.append(
                Mail(
                    to=list(envelope.rcpt_tos),
                    # a long header is folded onto the next line; unfolded, its leading space is not part of it
                    message_id=str(message["Message-ID"]).strip(),
                    key=str(message["X-BMS-Idempotency-Key"]).strip(),
                    subject=str(message["Subject"]),
                    body=message.get_content(),
                )
            )
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def keys(self) -> Counter:
        with self.lock:
            return Counter(mail.key for mail in self.mails)


@dataclass
class Hit:
    """One webhook request the receiver answered."""

    path: str
    key: str
    signature: str
    body: bytes
    status: int

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class WebhookReceiver:
    """A ThreadingHTTPServer on loopback recording every POST; per path it can answer errors a number of times."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.failures: dict[str, tuple[int, int]] = {}  # path -> (times left, status)
        self.gates: dict[str, threading.Event] = {}  # held paths: answered when their event is set
        self.waiting: Counter = Counter()  # per path: requests received and not yet answered
        self.lock = threading.Lock()
        self.port = free_port()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, path: str, times: int, status: int = 500) -> None:
        with self.lock:
            self.failures[path] = (times, status)

    def hold(self, path: str) -> None:
        """Answer requests to ``path`` only after :meth:`release` (they are counted as they arrive)."""
        with self.lock:
            self.gates[path] = threading.Event()

    def release(self, path: str) -> None:
        """Answer the requests held at ``path``, and those that come later at once."""
        with self.lock:
            gate = self.gates.pop(path, None)
        if gate is not None:
            gate.set()

    def holding(self, path: str) -> int:
        """How many requests to ``path`` have arrived and wait for their answer."""
        with self.lock:
            return self.waiting[path]

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        with self.lock:
            left, status = self.failures.get(handler.path, (0, 200))
            if left > 0:
                self.failures[handler.path] = (left - 1, status)
            else:
                status = 200
            self.hits.append(
                Hit(
                    handler.path,
                    handler.headers.get("Idempotency-Key", ""),
                    handler.headers.get("X-BMS-Signature", ""),
                    body,
                    status,
                )
            )
            gate = self.gates.get(handler.path)
            if gate is not None:
                self.waiting[handler.path] += 1
        if gate is not None:
            # bounded, so that a test that forgets to release fails on its own assertions instead of hanging
            gate.wait(60)
            with self.lock:
                self.waiting[handler.path] -= 1
        handler.send_response(status)
        if 300 <= status < 400:
            handler.send_header("Location", self.url("/elsewhere"))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        for path in list(self.gates):
            self.release(path)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.thread is not None:
            self.thread.join(5)
            self.thread = None

    def accepted(self, path: str | None = None) -> list[Hit]:
        with self.lock:
            return [hit for hit in self.hits if hit.status == 200 and (path is None or hit.path == path)]

    def keys(self, path: str | None = None) -> Counter:
        return Counter(hit.key for hit in self.accepted(path))

    def attempts(self, path: str | None = None) -> int:
        with self.lock:
            return sum(1 for hit in self.hits if path is None or hit.path == path)
