"""Operator actions on alarms (acknowledge, shelve, unshelve), asked of the active node's engine.

The engine owns the alarm states, so an action is a request on the engine
channel and the engine's answer says, per alarm, what happened. An action is
idempotent (acknowledging an acknowledged alarm changes nothing; shelving
again sets a new end), so an answer lost to a timeout is safe to repeat: the
caller gets :class:`EngineUnavailable` and says so, and the journal records
what was done. A standby's engine refuses (:class:`NotActive`); its web side
refuses writes before that anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync

from bms.alarms.engine import ACTIONS, UNKNOWN_ALARM
from bms.engine import bus
from bms.realtime.snapshot import EngineUnavailable, ask_engine

__all__ = ["ACTIONS", "UNKNOWN_ALARM", "ActionResult", "EngineUnavailable", "NotActive", "aperform", "perform"]
MAX_ALARMS = 10_000
MAX_COMMENT = 2000


class NotActive(RuntimeError):
    """This node's engine is not the active one: alarm actions go to the active node."""


@dataclass
class ActionResult:
    """Per alarm: ``done`` (the action happened), ``unchanged`` (nothing to do), ``refused`` (name -> reason)."""

    done: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"done": self.done, "unchanged": self.unchanged, "refused": self.refused}


def _checked(
    action: str, alarms: list[str], user: str, comment: str, seconds: float | None, until_normal: bool
) -> dict[str, Any]:
    if action not in ACTIONS:
        raise ValueError(f"unknown alarm action {action!r}; use one of {', '.join(ACTIONS)}")
    if not isinstance(alarms, list | tuple) or not all(isinstance(name, str) for name in alarms):
        raise ValueError("alarms must be a list of alarm names")
    if not alarms:
        raise ValueError("name at least one alarm")
    if len(alarms) > MAX_ALARMS:
        raise ValueError(f"at most {MAX_ALARMS} alarms per action")
    if not user:
        raise ValueError("an alarm action needs the user who made it")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT or "\x00" in comment:
        raise ValueError(f"the comment must be text of at most {MAX_COMMENT} characters")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
            raise ValueError("seconds must be a number")
        if seconds <= 0:
            raise ValueError("shelving lasts a positive number of seconds")
    return {
        "type": bus.ALARM_ACTION,
        "action": action,
        "alarms": list(alarms),
        "user": user,
        "comment": comment,
        "seconds": float(seconds) if seconds is not None else None,
        "until_normal": bool(until_normal),
    }


async def aperform(
    action: str,
    alarms: list[str],
    user: str,
    *,
    comment: str = "",
    seconds: float | None = None,
    until_normal: bool = False,
    wait_seconds: float = 5.0,
) -> ActionResult:
    """Apply ``action`` to ``alarms`` as ``user``; raises ValueError, :class:`NotActive` or EngineUnavailable."""
    message = _checked(action, alarms, user, comment, seconds, until_normal)
    reply = await ask_engine(message, wait_seconds, "the alarm action may not have been applied; look at the journal")
    if reply.get("error") == "not_active":
        raise NotActive(reply.get("detail", "this node is not the active one"))
    if reply.get("error"):
        raise ValueError(reply.get("detail", "the engine refused the action"))
    return ActionResult(list(reply["done"]), list(reply["unchanged"]), dict(reply["refused"]))


#: :func:`aperform` for synchronous views (the same arguments)
perform = async_to_sync(aperform)
