"""Values as the audit trail records them: bounded and JSON-safe, whatever arrived.

Used for the values a client sent with a refused write (bms/control/services.py)
and for the old and new values of a configuration change (bms/audit/changes.py),
so every audit row can be stored, sent to the partner and shown (ADR 0011).
"""

from __future__ import annotations

import math

from bms.engine.scaling import WIDEST_INT_MAX, WIDEST_INT_MIN, preview

#: how much of one value the audit trail keeps
RECORDED_CHARS = 200


def recordable(value: object, limit: int = RECORDED_CHARS) -> object:
    """A short, JSON-safe stand-in for ``value``.

    Numbers only if they fit 64 bits and are finite, strings cut to ``limit``,
    containers as a short preview, NUL and unencodable characters escaped
    (msgpack packs 64-bit integers at most, a frame has a size limit,
    PostgreSQL's json refuses NaN and Infinity and cannot hold NUL).
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if WIDEST_INT_MIN <= value <= WIDEST_INT_MAX else preview(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return bounded_text(value, limit)
    return bounded_text(preview(value, limit), limit)


def bounded_text(text: str, limit: int = RECORDED_CHARS) -> str:
    """``text`` cut to ``limit`` characters, NUL and lone surrogates escaped (PostgreSQL and UTF-8 refuse them)."""
    text = text[: limit + 1].replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."
