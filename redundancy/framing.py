"""Frames of the sync link: length-prefixed msgpack bodies, HMAC-authenticated (handshake) or AEAD-sealed (session).

Every frame starts with the same header::

    magic "BS" | version (1) | kind (1) | counter (8) | length (4)

The two HELLO frames of the handshake (node name and a fresh nonce, nothing
else) are plaintext, authenticated with HMAC-SHA256 under a key derived from
the shared secret alone::

    header | msgpack body (length) | HMAC-SHA256 (32) over direction | header | body

Their body is limited to :data:`HELLO_MAX_BODY`, checked from the header
before a byte of it is read: a peer that has not proved it holds the secret
can make a node read only a few kilobytes.

Every SESSION frame after the handshake is encrypted and authenticated with
ChaCha20-Poly1305 (ADR 0009)::

    header | ChaCha20-Poly1305(msgpack body) with its 16-byte tag (length, tag included)

under a key of its own direction (``c>s`` or ``s>c``) derived from the
session key, which is derived from the secret and both sides' fresh nonces,
so every connection and direction has its own key. The nonce is the frame
counter (96 bits, big-endian), which grows by exactly one per frame, so it
never repeats under one key; the header is the associated data. A frame
altered anywhere, sealed for the other direction or recorded on another
connection fails authentication (``auth``); one replayed on its own
connection fails the counter (``replay``), a dropped one leaves a ``gap``.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

MAGIC = b"BS"
# 2: session frames are encrypted (ADR 0009). A version-1 peer is refused from the header ("version").
VERSION = 2
HELLO = 1
SESSION = 2
HEADER = struct.Struct("!2sBBQI")
MAC_SIZE = 32
TAG_SIZE = 16
NONCE_PAD = bytes(4)  # 96-bit AEAD nonce = 4 zero bytes | the 64-bit frame counter
DEFAULT_MAX_BODY = 16 * 1024 * 1024  # a 100,000-point snapshot travels in chunks well below this
# A HELLO holds a node name and a 16-byte nonce (about 60 bytes): anything near this limit is not ours, and a
# peer that has not yet proved it holds the secret must not make the node hold more (issue 8, item 7).
HELLO_MAX_BODY = 4096
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
    return hmac.new(secret, b"bms-sync-hello-v2", hashlib.sha256).digest()


def session_key(secret: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return hmac.new(secret, b"bms-sync-session-v2" + client_nonce + server_nonce, hashlib.sha256).digest()


def direction_key(session: bytes, direction: bytes) -> bytes:
    """The AEAD key of one direction of one connection (HKDF-Expand of the session key, RFC 5869)."""
    # Separate keys per direction: a counter value is then used once per key even though both sides count from 1,
    # and a frame sent back to its sender (reflection) fails authentication.
    return HKDFExpand(hashes.SHA256(), 32, b"bms-sync-aead-v2 " + direction).derive(session)


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


def _typed(payload: bytes) -> dict[str, Any]:
    try:
        body = unpack(payload)
    except Exception as exc:  # msgpack raises several unrelated types
        raise FrameError("garbage", f"undecodable frame body: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("t"), str):
        raise FrameError("garbage", "frame body is not a typed message")
    return body


def parse_header(header: bytes, max_body: int) -> tuple[int, int, int]:
    """Return (kind, counter, length); raise :class:`FrameError` for anything malformed or oversize."""
    magic, version, kind, counter, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise FrameError("garbage", f"not a sync-link frame (starts with {header[:4]!r})")
    if version != VERSION:
        raise FrameError(
            "version", f"unsupported sync-link version {version} (this node speaks {VERSION}: upgrade both nodes)"
        )
    if kind not in (HELLO, SESSION):
        raise FrameError("garbage", f"unknown frame kind {kind}")
    if length > max_body:
        raise FrameError("oversize", f"frame of {length} bytes exceeds the limit of {max_body}")
    return kind, counter, length


def _check_counter(counter: int, last: int) -> None:
    if counter != last + 1:
        reason = "replay" if counter <= last else "gap"
        raise FrameError(reason, f"frame counter {counter} where {last + 1} was expected")


@dataclass(slots=True)
class Sealer:
    """Encodes outgoing HMAC-authenticated plaintext frames of one direction: on the wire, only the two HELLOs."""

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
    """Checks incoming HMAC-authenticated plaintext frames of one direction (on the wire, HELLOs): size, MAC, count."""

    key: bytes
    direction: bytes
    max_body: int = DEFAULT_MAX_BODY  # the handshake passes HELLO_MAX_BODY
    counter: int = 0
    trailer: ClassVar[int] = MAC_SIZE  # bytes that follow the body announced in the header

    def parse_header(self, header: bytes) -> tuple[int, int, int]:
        return parse_header(header, self.max_body)

    def open_frame(self, header: bytes, rest: bytes, expected_kind: int = SESSION) -> dict[str, Any]:
        """Open a frame read as its header and the ``length + trailer`` bytes after it."""
        return self.open(header, rest[: -self.trailer], rest[-self.trailer :], expected_kind)

    def open(self, header: bytes, payload: bytes, mac: bytes, expected_kind: int = SESSION) -> dict[str, Any]:
        kind, counter, _ = self.parse_header(header)
        good = hmac.new(self.key, self.direction + header + payload, hashlib.sha256).digest()
        if not hmac.compare_digest(good, mac):
            raise FrameError("auth", "frame authentication failed (wrong secret or altered frame)")
        if kind != expected_kind:
            raise FrameError("sequence", f"frame kind {kind} where {expected_kind} was expected")
        _check_counter(counter, self.counter)
        self.counter = counter
        return _typed(payload)


@dataclass(slots=True)
class SessionSealer:
    """Encrypts outgoing session frames of one direction of one connection (ChaCha20-Poly1305)."""

    key: bytes = field(repr=False)  # the connection's session key; the direction's own key is derived from it
    direction: bytes
    counter: int = 0
    _aead: ChaCha20Poly1305 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._aead = ChaCha20Poly1305(direction_key(self.key, self.direction))

    def seal(self, body: dict[str, Any]) -> bytes:
        payload = pack(body)
        self.counter += 1
        header = HEADER.pack(MAGIC, VERSION, SESSION, self.counter, len(payload) + TAG_SIZE)
        return header + self._aead.encrypt(NONCE_PAD + self.counter.to_bytes(8, "big"), payload, header)


@dataclass(slots=True)
class SessionOpener:
    """Decrypts and checks incoming session frames of one direction of one connection: size, tag, counter."""

    key: bytes = field(repr=False)
    direction: bytes
    max_body: int = DEFAULT_MAX_BODY
    counter: int = 0
    trailer: ClassVar[int] = 0  # the tag is counted in the header's length
    _aead: ChaCha20Poly1305 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._aead = ChaCha20Poly1305(direction_key(self.key, self.direction))

    def parse_header(self, header: bytes) -> tuple[int, int, int]:
        return parse_header(header, self.max_body)

    def open_frame(self, header: bytes, sealed: bytes) -> dict[str, Any]:
        """Open a frame read as its header and the ``length`` bytes after it (ciphertext and tag)."""
        kind, counter, _ = self.parse_header(header)
        try:
            # The counter is the nonce: a frame moved to another position decrypts under the wrong nonce and fails.
            payload = self._aead.decrypt(NONCE_PAD + counter.to_bytes(8, "big"), sealed, header)
        except InvalidTag:
            raise FrameError("auth", "frame authentication failed (wrong key, altered or misdirected frame)") from None
        if kind != SESSION:
            raise FrameError("sequence", f"frame kind {kind} where {SESSION} was expected")
        _check_counter(counter, self.counter)
        self.counter = counter
        return _typed(payload)
