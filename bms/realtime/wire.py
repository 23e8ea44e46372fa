"""The live websocket's two wire forms, rendered from the engine's live rows once per frame.

Both are described for client authors in ``docs/live-protocol.md``:

- ``keyed`` (the default, ``/ws/live/``): every point state is an object
  ``{"value", "quality", "time", "changed", "seq"}`` keyed by point name;
  times are ISO-8601 UTC strings.
- ``compact`` (``/ws/live/?wire=compact``): a snapshot names its points once
  (``names``) and gives their states as positional arrays
  ``[value, quality, time_ms, changed_ms, seq]``; a delta gives
  ``[index, value, quality, time_ms, changed_ms, seq]`` where ``index`` is the
  point's position in the last snapshot's ``names``; times are integer epoch
  milliseconds.

Rows come from the engine as ``[value, quality, time_us, changed_us, seq]``
(:mod:`bms.engine.bus`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

KEYED = "keyed"
COMPACT = "compact"
FORMS = (KEYED, COMPACT)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_encode = json.JSONEncoder(separators=(",", ":")).encode


def encode(message: dict[str, Any]) -> str:
    """One message as compact JSON text."""
    return _encode(message)


def iso_time(micros: int | None, memo: dict[int, str]) -> str | None:
    """Epoch microseconds as the ISO-8601 text the keyed form has always carried (``memo``: one frame's)."""
    if micros is None:
        return None
    text = memo.get(micros)
    if text is None:
        text = memo[micros] = (_EPOCH + timedelta(microseconds=micros)).isoformat()
    return text


def _millis(micros: int | None) -> int | None:
    return None if micros is None else micros // 1000


def keyed_state(row: Sequence[Any], memo: dict[int, str]) -> dict[str, Any]:
    value, quality, time_us, changed_us, seq = row
    return {
        "value": value,
        "quality": quality,
        "time": iso_time(time_us, memo),
        "changed": iso_time(changed_us, memo),
        "seq": seq,
    }


def snapshot_text(form: str, seq: int, names: Sequence[str], rows: dict[str, Sequence[Any]]) -> str:
    """A snapshot of ``names`` (in that order) taken at ``seq``."""
    if form == COMPACT:
        points: Any = [
            [row[0], row[1], _millis(row[2]), _millis(row[3]), row[4]] for row in map(rows.__getitem__, names)
        ]
        return encode({"type": "snapshot", "seq": seq, "names": list(names), "points": points})
    memo: dict[int, str] = {}
    return encode({"type": "snapshot", "seq": seq, "points": {name: keyed_state(rows[name], memo) for name in names}})


def delta_text(form: str, first: int, seq: int, changes: Iterable[tuple[int, str, Sequence[Any]]]) -> str:
    """A delta covering ``(first, seq]`` with ``changes`` as ``(position, name, row)``."""
    if form == COMPACT:
        points: Any = [
            [position, row[0], row[1], _millis(row[2]), _millis(row[3]), row[4]] for position, _name, row in changes
        ]
    else:
        memo: dict[int, str] = {}
        points = {name: keyed_state(row, memo) for _position, name, row in changes}
    return encode({"type": "delta", "from": first, "seq": seq, "points": points})
