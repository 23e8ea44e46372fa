"""What the schedule and logic endpoints share: live image entries, read without making the answer wait long.

Live state (``schedule:<name>``, ``logic:<rule>`` and point values) is read
from the process image the way the alarm endpoints read it
(:func:`bms.realtime.snapshot.fetch_snapshot`): from this process's live hub
when it holds the image, else asked of the engine. When the engine does not
answer, the endpoints still answer, with ``live`` null and the reason.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync

from bms.api.v1.alarms import live_wait_seconds
from bms.realtime.snapshot import EngineUnavailable, fetch_snapshot


def live_entries(names: list[str], wait_seconds: float | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """The image entries ``names`` (keyed form: value, quality, time, changed, seq) that exist, and why not if none.

    Returns ``(entries, None)``, or ``(None, reason)`` when the engine did not answer in time
    (``BMS_API_ENGINE_WAIT_SECONDS``). An entry the image does not hold (the engine does not run that
    schedule or rule yet, a point that is not polled) is simply absent from ``entries``.
    """
    try:
        snapshot = async_to_sync(fetch_snapshot)(live_wait_seconds() if wait_seconds is None else wait_seconds)
    except EngineUnavailable as exc:
        return None, str(exc)
    image = snapshot["points"]
    return {name: image[name] for name in names if name in image}, None
