"""Frames of the sync link: length-prefixed msgpack bodies, each authenticated with an HMAC.

Wire format of one frame::

    magic "BS" | version (1) | kind (1) | counter (8) | length (4) | body (length) | HMAC-SHA256 (32)

The HMAC covers everything before it plus the direction of travel, so a
frame cannot be reflected back to its sender. ``kind`` is HELLO for the two
handshake frames (keyed with a key derived from the shared secret alone) and
SESSION for everything after (keyed with a key derived from the secret and
both sides' fresh nonces). ``counter`` must grow by exactly one per frame in
each direction, so a replayed, dropped or reordered frame is detected; a
frame recorded on an earlier connection fails the MAC because that
connection had other nonces.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

MAGIC = b"BS"
VERSION = 1
HELLO = 1
SESSION = 2
HEADER = struct.Struct("!2sBBQI")
MAC_SIZE = 32
DEFAULT_MAX_BODY = 16 * 1024 * 1024  # a 100,000-point snapshot travels in chunks well below this
# Bodies from this size up (snapshot chunks) are decoded with the cyclic garbage collector paused: decoding
# creates hundreds of thousands of acyclic containers, which would otherwise trigger full collections of the
# whole heap over and over (measured: 100,000 points decode in ~0.1 s paused, ~0.2-0.3 s not; bench/state_transfer.py).
GC_PAUSE_BYTES = 256 * 1024


class FrameError(Exception):
    """A frame that must be rejected; ``reason`` is a short machine-readable word for counters and logs."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def hello_key(secret: bytes) -> bytes:
    return hmac.new(secret, b"bms-sync-hello-v1", hashlib.sha256).digest()


def session_key(secret: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return hmac.new(secret, b"bms-sync-session-v1" + client_nonce + server_nonce, hashlib.sha256).digest()


def pack(body: dict[str, Any]) -> bytes:
    """msgpack with aware datetimes as msgpack timestamps (they come back as aware UTC datetimes)."""
    return msgpack.packb(body, datetime=True, use_bin_type=True)


def unpack(data: bytes) -> Any:
    if len(data) < GC_PAUSE_BYTES or not gc.isenabled():
        return msgpack.unpackb(data, timestamp=3, raw=False, strict_map_key=False)
    gc.disable()
    try:
        return msgpack.unpackb(data, timestamp=3, raw=False, strict_map_key=False)
    finally:
        gc.enable()


@dataclass(slots=True)
class Sealer:
    """Encodes outgoing frames of one direction of one connection."""

    key: bytes
    direction: bytes  # b"c>s" or b"s>c"
    counter: int = 0

    def seal(self, body: dict[str, Any], kind: int = SESSION) -> bytes:
        payload = pack(body)
        self.counter += 1
        header = HEADER.pack(MAGIC, VERSION, kind, self.counter, len(payload))
        mac = hmac.new(self.key, self.direction + header + payload, hashlib.sha256).digest()
        return header + payload + mac


@dataclass(slots=True)
class Opener:
    """Checks incoming frames of one direction of one connection: size, MAC, counter."""

    key: bytes
    direction: bytes
    max_body: int = DEFAULT_MAX_BODY
    counter: int = 0

    def parse_header(self, header: bytes) -> tuple[int, int, int]:
        """Return (kind, counter, body length); raise :class:`FrameError` for anything malformed or oversize."""
        magic, version, kind, counter, length = HEADER.unpack(header)
        if magic != MAGIC:
            raise FrameError("garbage", f"not a sync-link frame (starts with {header[:4]!r})")
        if version != VERSION:
            raise FrameError("version", f"unsupported sync-link version {version}")
        if kind not in (HELLO, SESSION):
            raise FrameError("garbage", f"unknown frame kind {kind}")
        if length > self.max_body:
            raise FrameError("oversize", f"frame of {length} bytes exceeds the limit of {self.max_body}")
        return kind, counter, length

    def open(self, header: bytes, payload: bytes, mac: bytes, expected_kind: int = SESSION) -> dict[str, Any]:
        kind, counter, _ = self.parse_header(header)
        good = hmac.new(self.key, self.direction + header + payload, hashlib.sha256).digest()
        if not hmac.compare_digest(good, mac):
            raise FrameError("auth", "frame authentication failed (wrong secret or altered frame)")
        if kind != expected_kind:
            raise FrameError("sequence", f"frame kind {kind} where {expected_kind} was expected")
        if counter != self.counter + 1:
            reason = "replay" if counter <= self.counter else "gap"
            raise FrameError(reason, f"frame counter {counter} where {self.counter + 1} was expected")
        self.counter = counter
        try:
            body = unpack(payload)
        except Exception as exc:  # msgpack raises several unrelated types
            raise FrameError("garbage", f"undecodable frame body: {exc}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("t"), str):
            raise FrameError("garbage", "frame body is not a typed message")
        return body
