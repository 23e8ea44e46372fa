"""Token keys: how one is made, shown once, stored (hashed) and recognised.

A key reads ``bms_<prefix>_<secret>``: the prefix (8 characters) names the
token in lists, logs and audit rows without revealing it; the secret is 32
random bytes. Only the SHA-256 of the whole key is stored. A plain hash (no
salt, no slow function) is enough for 256 random bits, and lets a request be
checked with one indexed lookup and one constant-time comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_PATTERN = re.compile(r"^bms_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$")
PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: ``key`` is shown to its owner once; the token row keeps ``prefix`` and ``digest``."""

    key: str
    prefix: str
    digest: str


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def make_key() -> NewKey:
    prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(8))
    key = f"bms_{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(key, prefix, digest_of(key))


def prefix_of(key: str) -> str | None:
    """The prefix of a well-formed key, else None (a malformed key is refused before any lookup)."""
    match = KEY_PATTERN.match(key)
    return match.group(1) if match else None


def matches(key: str, digest: str) -> bool:
    return hmac.compare_digest(digest_of(key), digest)
