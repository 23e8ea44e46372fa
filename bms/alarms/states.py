"""The alarm state machine of ISA-18.2 / IEC 62682, one :class:`Alarm` per alarm definition. Pure Python.

States (``AlarmState.state``) and the transitions between them::

    normal ──raised──▶ active_unacked ──acknowledged──▶ active_acked ──returned──▶ normal
                       active_unacked ──returned──▶ rtn_unacked ──acknowledged──▶ normal
                                                    rtn_unacked ──raised──▶ active_unacked

An alarm that needs no acknowledgement goes straight to ``active_acked``
when raised and back to ``normal`` when it returns. Three operator or design
conditions hide an alarm from annunciation, each a flag beside the state:
**shelved** (an operator, timed: 15 min by default, never longer than the
configured maximum; or until the alarm returns to normal, also capped),
**suppressed** by design (another bool point is true, such as "AHU off"), and
**out of service** (an engineer). While any of them holds, the state is
``normal`` and nothing is raised or returned, but the condition is still
tracked: when the last of them ends, an alarm whose condition is active is
raised again (after leaving suppression by design the on-delay runs again
first, since what suppressed it, such as a fan starting, needs that time).
The state shown to users (:attr:`Alarm.display_state`) is then
``out_of_service``, ``suppressed`` or ``shelved``, in that order of precedence.

Timers never read the clock: every method takes ``now`` (aware UTC; the
engine passes the value's source time, or its timer's time), and a timer
that has expired by ``now`` fires *at its due time*: an on-delay started at
``t`` by the source fires at ``t + on_delay`` whichever node evaluates it,
so a node that takes over with the replicated state (:meth:`AlarmState.to_dict`)
continues the delay from the source time, not from the takeover.

* **On-delay / off-delay**: the raw condition (from
  :func:`bms.alarms.conditions.evaluate`) must hold for this long before the
  alarm becomes active / returns (``pending_since`` is when it changed).
* **Re-alarm**: while ``active_unacked``, a ``realarm`` transition every
  ``realarm_seconds`` after the last annunciation (one row for a late tick,
  not one per missed period).
* **Chattering**: more than ``chatter_count`` activations and returns within
  ``chatter_window`` seconds mark the alarm chattering (one ``chattering``
  transition, with the count); from then on its raises and returns update the
  state silently and are counted, until it has been quiet for a whole window:
  then one ``chattering_ended`` transition carries how many were summarised.

Every method returns the list of :class:`Transition` it caused, in time
order: the caller writes each as a journal row (and notifies), and since the
state moved on with them, a repeated call never raises the same alarm twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


class State(StrEnum):
    """The alarm state proper (ISA-18.2 A, B, C, D)."""

    NORMAL = "normal"
    ACTIVE_UNACKED = "active_unacked"
    ACTIVE_ACKED = "active_acked"
    RTN_UNACKED = "rtn_unacked"


class Inhibit(StrEnum):
    """What hides an alarm from annunciation; shown instead of the state, in this order of precedence."""

    OUT_OF_SERVICE = "out_of_service"
    SUPPRESSED = "suppressed"
    SHELVED = "shelved"


DISPLAY_STATES = (*State, *Inhibit)


class TransitionKind(StrEnum):
    """What a journal row records."""

    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    RETURNED = "returned"
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    SUPPRESSED = "suppressed"
    UNSUPPRESSED = "unsuppressed"
    OUT_OF_SERVICE = "out_of_service"
    IN_SERVICE = "in_service"
    REALARM = "realarm"
    CHATTERING = "chattering"
    CHATTERING_ENDED = "chattering_ended"


#: shelving when the operator gives no duration
SHELVE_DEFAULT_SECONDS = 15 * 60
#: the longest shelving, unless the site configures another
SHELVE_MAX_SECONDS = 8 * 3600
#: more than this many activations and returns ...
CHATTER_COUNT = 5
#: ... within this many seconds: chattering
CHATTER_WINDOW_SECONDS = 60.0

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class AlarmActionRefused(Exception):
    """An operator action that cannot be done in the alarm's present state (nothing was changed)."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One journal entry: what happened to which alarm, when, and the state it left the alarm in.

    ``state`` is the display state after the transition; ``value`` the latest
    value evaluated; ``user`` and ``comment`` are an operator's; ``count`` is
    how many activations and returns a chattering row covers.
    """

    alarm: str
    kind: TransitionKind
    state: str
    time: datetime
    value: Any = None
    user: str = ""
    comment: str = ""
    count: int = 0
    #: the transition's number in its alarm's life (AlarmState.journal_seq after it): one journal row per number
    number: int = 0


@dataclass(frozen=True, slots=True)
class AlarmConfig:
    """How one alarm behaves in time (from its definition and the site's settings). Seconds throughout.

    A chatter count or window of 0 turns chattering detection off; a
    ``realarm_seconds`` of 0 turns re-alarm off.
    """

    ack_required: bool = True
    on_delay: float = 0.0
    off_delay: float = 0.0
    realarm_seconds: float = 0.0
    shelve_default: float = SHELVE_DEFAULT_SECONDS
    shelve_max: float = SHELVE_MAX_SECONDS
    chatter_count: int = CHATTER_COUNT
    chatter_window: float = CHATTER_WINDOW_SECONDS


@dataclass(slots=True)
class AlarmState:
    """Everything an alarm remembers; small, and replicated with the process image (:meth:`to_dict`)."""

    state: State = State.NORMAL
    #: when ``state`` or the display state last changed
    since: datetime | None = None
    #: the raw condition at the last evaluation
    condition: bool = False
    #: the condition after the on- and off-delays
    active: bool = False
    #: the raw condition has differed from ``active`` since then: the delay counts from here
    pending_since: datetime | None = None
    #: the latest value evaluated (journal rows carry it)
    value: Any = None
    #: the last annunciation (raise, re-alarm, end of chattering): re-alarm counts from here
    notified_at: datetime | None = None
    #: shelved while set; shelving ends then
    shelved_until: datetime | None = None
    #: shelving also ends when the alarm returns to normal
    shelved_until_normal: bool = False
    shelved_by: str = ""
    suppressed: bool = False
    out_of_service: bool = False
    chattering: bool = False
    #: times of the recent activations and returns (at most chatter_count + 1; while chattering, the last one)
    changes: tuple[datetime, ...] = ()
    #: activations and returns hidden while chattering
    summarised: int = 0
    #: transitions so far (the last one's number): replicated with the state, so a node that takes over goes on
    #: numbering where the old one stopped, and a transition both wrote is stored once (ADR 0014)
    journal_seq: int = 0

    def __post_init__(self) -> None:
        self.state = State(self.state)  # a plain "normal" too: the machine compares enum members

    def to_dict(self) -> dict[str, Any]:
        """The state as a small JSON- and msgpack-safe dict: defaults left out, times in epoch microseconds."""
        data: dict[str, Any] = {"state": self.state.value}
        for key in _TIME_FIELDS:
            when = getattr(self, key)
            if when is not None:
                data[key] = _to_us(when)
        for key in _PLAIN_FIELDS:
            item = getattr(self, key)
            if item:
                data[key] = item
        if self.value is not None:
            data["value"] = self.value
        if self.changes:
            data["changes"] = [_to_us(when) for when in self.changes]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlarmState:
        """The inverse of :meth:`to_dict` (keys it does not know, from a newer node, are ignored)."""
        state = cls(state=State(data.get("state", State.NORMAL)))
        for key in _TIME_FIELDS:
            if data.get(key) is not None:
                setattr(state, key, _from_us(data[key]))
        for key, kind in _PLAIN_FIELDS.items():
            if key in data:
                setattr(state, key, kind(data[key]))
        state.value = data.get("value")
        state.changes = tuple(_from_us(us) for us in data.get("changes", ()))
        return state


_TIME_FIELDS = ("since", "pending_since", "notified_at", "shelved_until")
_PLAIN_FIELDS = {
    "condition": bool,
    "active": bool,
    "shelved_until_normal": bool,
    "shelved_by": str,
    "suppressed": bool,
    "out_of_service": bool,
    "chattering": bool,
    "summarised": int,
    "journal_seq": int,
}


def _to_us(when: datetime) -> int:
    return (when - _EPOCH) // _MICROSECOND


def _from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def _check_time(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError(f"alarm times must be timezone-aware (UTC), not {now!r}")


class Alarm:
    """One alarm: its name (the definition's), how it behaves in time, and its state."""

    __slots__ = ("config", "name", "state")

    def __init__(self, name: str, config: AlarmConfig | None = None, state: AlarmState | None = None) -> None:
        self.name = name
        self.config = config or AlarmConfig()
        self.state = state or AlarmState()

    def __repr__(self) -> str:
        return f"<Alarm {self.name} {self.display_state}>"

    # ---- what it looks like -------------------------------------------------------------------------

    @property
    def inhibit(self) -> Inhibit | None:
        """What hides the alarm, if anything (the first of out of service, suppressed, shelved)."""
        state = self.state
        if state.out_of_service:
            return Inhibit.OUT_OF_SERVICE
        if state.suppressed:
            return Inhibit.SUPPRESSED
        if state.shelved_until is not None:
            return Inhibit.SHELVED
        return None

    @property
    def display_state(self) -> str:
        """The state users see: the inhibit if there is one, else the alarm state."""
        inhibit = self.inhibit
        return inhibit.value if inhibit is not None else self.state.state.value

    def next_deadline(self) -> datetime | None:
        """The earliest time :meth:`tick` has something to do (None: nothing until the next event)."""
        dues = [due for due, _ in self._timers()]
        return min(dues) if dues else None

    # ---- inputs ---------------------------------------------------------------------------------------

    def update(self, condition: bool, now: datetime, value: Any = None) -> list[Transition]:
        """A new evaluation of the raw condition at ``now`` (the value's source time), with the value."""
        _check_time(now)
        out = self._advance(now)
        state = self.state
        state.value = value
        if condition != state.condition:
            state.condition = condition
            state.pending_since = None if condition == state.active else now
        out += self._advance(now)
        return out

    def tick(self, now: datetime) -> list[Transition]:
        """Fire every timer due by ``now`` (delays, shelving expiry, re-alarm, end of chattering)."""
        _check_time(now)
        return self._advance(now)

    def acknowledge(self, now: datetime, user: str, comment: str = "") -> list[Transition]:
        """An operator acknowledges: active_unacked -> active_acked, rtn_unacked -> normal; else nothing."""
        _check_time(now)
        if not user:
            raise ValueError("an acknowledgement needs the user who made it")
        out = self._advance(now)
        state = self.state
        if state.state is State.ACTIVE_UNACKED:
            state.state = State.ACTIVE_ACKED
        elif state.state is State.RTN_UNACKED:
            state.state = State.NORMAL
        else:
            return out
        state.since = now
        out.append(self._transition(TransitionKind.ACKNOWLEDGED, now, user, comment))
        return out

    def shelve(
        self,
        now: datetime,
        user: str,
        *,
        seconds: float | None = None,
        until_normal: bool = False,
        comment: str = "",
    ) -> list[Transition]:
        """An operator shelves the alarm for ``seconds`` (default 15 min, capped at the maximum).

        ``until_normal``: shelving also ends when the alarm returns to normal
        (the cap still applies). Shelving again while shelved sets a new end.
        Refused, changing nothing (:class:`AlarmActionRefused`), while out of
        service, or ``until_normal`` for an alarm that is not active.
        """
        _check_time(now)
        if not user:
            raise ValueError("shelving needs the user who asked for it")
        seconds = self.config.shelve_default if seconds is None else seconds
        if not seconds > 0 or math.isinf(seconds):
            raise ValueError(f"shelving lasts a positive number of seconds, not {seconds!r}")
        trial = Alarm(self.name, self.config, replace(self.state))
        trial._advance(now)
        if trial.state.out_of_service:
            raise AlarmActionRefused(f"{self.name} is out of service: it cannot be shelved")
        if until_normal and not trial.state.active:
            raise AlarmActionRefused(f"{self.name} is not active: shelving it until it returns to normal ends at once")
        out = self._advance(now)
        state = self.state
        state.shelved_until = now + timedelta(seconds=min(seconds, self.config.shelve_max))
        state.shelved_until_normal = until_normal
        state.shelved_by = user
        state.state = State.NORMAL
        state.since = now
        out.append(self._transition(TransitionKind.SHELVED, now, user, comment))
        return out

    def unshelve(self, now: datetime, user: str, comment: str = "") -> list[Transition]:
        """An operator ends shelving; an alarm whose condition is active is raised again. Not shelved: nothing."""
        _check_time(now)
        out = self._advance(now)
        if self.state.shelved_until is None:
            return out
        return out + self._unshelve(now, user, comment)

    def set_suppressed(self, suppressed: bool, now: datetime) -> list[Transition]:
        """Suppression by design (the suppression point) starts or ends at ``now``."""
        _check_time(now)
        out = self._advance(now)
        state = self.state
        if state.suppressed == suppressed:
            return out
        state.suppressed = suppressed
        state.since = now
        if suppressed:
            state.state = State.NORMAL
            out.append(self._transition(TransitionKind.SUPPRESSED, now))
            return out
        out.append(self._transition(TransitionKind.UNSUPPRESSED, now))
        if state.active and self.inhibit is None and self.config.on_delay > 0:
            # what suppressed it (a fan starting...) needs its on-delay again before the alarm counts
            state.active = False
            state.pending_since = now if state.condition else None
            return out + self._advance(now)
        return out + self._reannunciate(now)

    def set_out_of_service(
        self, out_of_service: bool, now: datetime, user: str = "", comment: str = ""
    ) -> list[Transition]:
        """An engineer takes the alarm out of service, or puts it back (raised again if still active)."""
        _check_time(now)
        out = self._advance(now)
        state = self.state
        if state.out_of_service == out_of_service:
            return out
        state.out_of_service = out_of_service
        state.since = now
        if out_of_service:
            state.state = State.NORMAL
            out.append(self._transition(TransitionKind.OUT_OF_SERVICE, now, user, comment))
            return out
        out.append(self._transition(TransitionKind.IN_SERVICE, now, user, comment))
        return out + self._reannunciate(now)

    # ---- inside -------------------------------------------------------------------------------------------

    def _transition(
        self, kind: TransitionKind, when: datetime, user: str = "", comment: str = "", count: int = 0
    ) -> Transition:
        self.state.journal_seq += 1
        return Transition(
            self.name, kind, self.display_state, when, self.state.value, user, comment, count, self.state.journal_seq
        )

    def _timers(self) -> list[tuple[datetime, str]]:
        """The running timers as ``(due, which)``."""
        state, config = self.state, self.config
        timers = []
        if state.pending_since is not None:
            delay = config.on_delay if state.condition else config.off_delay
            timers.append((state.pending_since + timedelta(seconds=delay), "delay"))
        if state.shelved_until is not None:
            timers.append((state.shelved_until, "shelving"))
        if state.chattering and state.changes:
            timers.append((state.changes[-1] + timedelta(seconds=config.chatter_window), "chatter"))
        if (
            config.realarm_seconds > 0
            and state.state is State.ACTIVE_UNACKED
            and state.notified_at is not None
            and not state.chattering
            and self.inhibit is None
        ):
            timers.append((state.notified_at + timedelta(seconds=config.realarm_seconds), "realarm"))
        return timers

    def _advance(self, now: datetime) -> list[Transition]:
        """Fire the timers due by ``now``, earliest first, each at its own due time."""
        out: list[Transition] = []
        for _ in range(64):  # each round ends a timer or moves it past the next one; a handful at most
            timers = sorted(self._timers(), key=lambda timer: timer[0])
            if not timers or timers[0][0] > now:
                return out
            due, which = timers[0]
            if which == "delay":
                self.state.pending_since = None
                self.state.active = self.state.condition
                out += self._active_changed(due)
            elif which == "shelving":
                out += self._unshelve(due, "", "shelving expired")
            elif which == "chatter":
                out += self._end_chattering(due)
            else:
                out += self._realarm(due, min([now] + [other for other, _ in timers[1:]]))
        raise RuntimeError(f"alarm {self.name}: timers did not settle by {now}")  # pragma: no cover

    def _active_changed(self, when: datetime) -> list[Transition]:
        """The delayed condition became ``state.active`` at ``when``."""
        state = self.state
        if not state.active and state.shelved_until is not None and state.shelved_until_normal:
            return self._unshelve(when, "", "returned to normal")
        if self.inhibit is not None:
            return []
        if state.active:
            if state.state in (State.ACTIVE_UNACKED, State.ACTIVE_ACKED):
                return []
            new_state = State.ACTIVE_UNACKED if self.config.ack_required else State.ACTIVE_ACKED
            kind = TransitionKind.RAISED
        else:
            if state.state is State.ACTIVE_UNACKED and self.config.ack_required:
                new_state = State.RTN_UNACKED
            elif state.state in (State.ACTIVE_UNACKED, State.ACTIVE_ACKED):
                new_state = State.NORMAL
            else:
                return []
            kind = TransitionKind.RETURNED
        summarise, starts_chattering = self._count_change(when)
        state.state = new_state
        state.since = when
        if starts_chattering:
            return [self._transition(TransitionKind.CHATTERING, when, count=len(state.changes))]
        if summarise:
            state.summarised += 1
            return []
        if kind is TransitionKind.RAISED:
            state.notified_at = when
        return [self._transition(kind, when)]

    def _count_change(self, when: datetime) -> tuple[bool, bool]:
        """Record an activation or return: ``(summarise it, it starts chattering)``."""
        state, config = self.state, self.config
        if config.chatter_count <= 0 or config.chatter_window <= 0:
            return False, False
        if state.chattering:
            state.changes = (when,)
            return True, False
        start = when - timedelta(seconds=config.chatter_window)
        recent = (*(change for change in state.changes if change > start), when)
        state.changes = recent[-(config.chatter_count + 1) :]
        if len(recent) > config.chatter_count:
            state.chattering = True
            state.summarised = 1
            return True, True
        return False, False

    def _end_chattering(self, when: datetime) -> list[Transition]:
        state = self.state
        count = state.summarised
        state.chattering = False
        state.changes = ()
        state.summarised = 0
        if state.state is State.ACTIVE_UNACKED and self.inhibit is None:
            state.notified_at = when
        return [self._transition(TransitionKind.CHATTERING_ENDED, when, count=count)]

    def _realarm(self, due: datetime, horizon: datetime) -> list[Transition]:
        """Re-alarm once, at the last period boundary before ``horizon`` (a late tick makes one row, not many)."""
        period = timedelta(seconds=self.config.realarm_seconds)
        when = due + period * math.floor((horizon - due) / period)
        self.state.notified_at = when
        return [self._transition(TransitionKind.REALARM, when)]

    def _unshelve(self, when: datetime, user: str, comment: str) -> list[Transition]:
        state = self.state
        state.shelved_until = None
        state.shelved_until_normal = False
        state.shelved_by = ""
        state.since = when
        return [self._transition(TransitionKind.UNSHELVED, when, user, comment), *self._reannunciate(when)]

    def _reannunciate(self, when: datetime) -> list[Transition]:
        """After the last inhibit ended: an active alarm is raised again, a normal one stays normal."""
        state = self.state
        if self.inhibit is not None or not state.active:
            return []
        state.state = State.ACTIVE_UNACKED if self.config.ack_required else State.ACTIVE_ACKED
        state.since = when
        state.notified_at = when
        return [self._transition(TransitionKind.RAISED, when)]


def acknowledge_many(alarms: Iterable[Alarm], now: datetime, user: str, comment: str = "") -> list[Transition]:
    """Acknowledge several alarms with one comment; those with nothing to acknowledge are left alone."""
    out: list[Transition] = []
    for alarm in alarms:
        out += alarm.acknowledge(now, user, comment)
    return out
