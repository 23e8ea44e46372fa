"""Stateful logic blocks: hysteresis, delay timers, PID, rate limiter, totalizer, latch, lead/lag sequencer. Pure.

No Django and no clock: every :meth:`Block.step` takes ``now`` (an aware UTC
datetime: the engine passes the evaluation time) and the block's inputs, and
returns its output (a tuple of bools for the sequencer). Everything a block
remembers is its ``state``, a small dataclass that :meth:`BlockState.to_dict`
turns into a JSON- and msgpack-safe dict (times as epoch microseconds, like
``AlarmState``) and :meth:`BlockState.from_dict` back: the engine keeps it in
the process image, so the standby holds it and a node that takes over
continues where the old one stopped (timers count from the times in the
state, integrators and runtimes go on from their values).

Parameters are frozen dataclasses built from a rule's JSON by
:func:`make_params`, which refuses unknown names, wrong types and
inconsistent values with a clear message. :data:`BLOCKS` lists the kinds;
``Block.slots(params)`` says which inputs a kind takes and their types,
``Block.output_types(params)`` what it gives.

Semantics in short (docs/logic.md has the long version):

* ``hysteresis``: on/off thresholds; ``on > off`` switches on at or above
  ``on`` and off at or below ``off`` (cooling), ``on < off`` the mirror image
  (heating); in between the output holds.
* ``on_delay``: the output follows the input to true once it has been true
  for ``delay`` seconds, to false at once. ``off_delay``: the mirror image.
  A timer fires at its due time (``since + delay``), whoever steps it.
* ``pid``: parallel form ``kp·e + ∫ki·e dt - kd·d(pv)/dt`` (derivative on
  the measurement, optionally filtered), reverse (heating: e = sp - pv) or
  direct (e = pv - sp) action, output limits, anti-windup by conditional
  integration (``clamp``) or ``back_calculation``, recomputed once per
  ``sample_time``, bumpless from manual (``auto`` false: the output follows
  ``track``) and from a replicated state.
* ``rate_limit``: the output follows the input at most ``rise`` / ``fall``
  units per second.
* ``totalizer``: the trapezoidal integral of the input over time divided by
  ``per`` (3600 for a flow per hour), held at 0 while ``reset`` is true.
* ``latch``: set/reset flip-flop, ``dominant`` says which wins when both are true.
* ``sequencer``: lead/lag staging of N units on a demand signal with stage-up
  and stage-down delays, the lead rotated by accumulated runtime every
  ``rotate_hours``.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from types import UnionType
from typing import Any, ClassVar

from bms.logic.expr import Type

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class ParamError(ValueError):
    """Block parameters that cannot be used; the message says which and why."""


def _to_us(when: datetime) -> int:
    return (when - _EPOCH) // _MICROSECOND


def _from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def _check_time(now: datetime) -> None:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise ValueError(f"logic times must be timezone-aware (UTC) datetimes, not {now!r}")


def _seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


@dataclass(frozen=True, slots=True)
class Slot:
    """One input of a block: its name (a rule binds an expression to it), type, and default when optional."""

    name: str
    type: Type
    required: bool = True
    default: Any = None
    help: str = ""


# ---- state ---------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class BlockState:
    """Base of the blocks' states: plain fields (float, int, bool, str, lists, datetimes), serialised generically.

    :meth:`to_dict` leaves out fields at their default and writes datetimes as
    epoch microseconds; :meth:`from_dict` ignores keys it does not know (from
    a newer node) and casts the rest to the field's type.
    """

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, default, factory in _defaults(type(self)):
            value = getattr(self, name)
            if factory is not None:
                default = factory()
            if value == default and type(value) is type(default):
                continue
            if isinstance(value, datetime):
                value = _to_us(value)
            elif isinstance(value, list | tuple):
                value = list(value)
            data[name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> typing.Self:
        kwargs: dict[str, Any] = {}
        hints = _hints(cls)
        for item in fields(cls):
            if data is None or item.name not in data or data[item.name] is None:
                continue
            kwargs[item.name] = _cast(hints[item.name], data[item.name])
        return cls(**kwargs)


_HINTS: dict[type, dict[str, Any]] = {}
#: per state class: (field, default, default factory or None); ``fields()`` per call cost a tenth of a rule's run
_DEFAULTS: dict[type, tuple[tuple[str, Any, Any], ...]] = {}


def _defaults(cls: type) -> tuple[tuple[str, Any, Any], ...]:
    found = _DEFAULTS.get(cls)
    if found is None:
        found = _DEFAULTS[cls] = tuple(
            (item.name, item.default, item.default_factory if item.default_factory is not MISSING else None)
            for item in fields(cls)
        )
    return found


def _hints(cls: type) -> dict[str, Any]:
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = typing.get_type_hints(cls)
    return found


def _cast(hint: Any, value: Any) -> Any:
    """``value`` as the annotated type: ``float | None`` -> float, ``list[float]`` -> list of float, datetimes."""
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) is list:
        (inner,) = typing.get_args(hint)
        return [_cast(inner, item) for item in value]
    if hint is datetime:
        return _from_us(value)
    if hint is bool:
        return bool(value)
    if hint is int:
        return int(value)
    if hint is float:
        return float(value)
    return str(value)


# ---- parameters ----------------------------------------------------------------------------------------------------


def make_params(kind: str, data: Mapping[str, Any] | None, outputs: int = 1) -> Any:
    """The parameters of a block of ``kind`` from a rule's JSON (``outputs``: how many output points it has).

    Raises :class:`ParamError` naming the first problem.
    """
    block = BLOCKS.get(kind)
    if block is None:
        raise ParamError(f"unknown block kind {kind!r}; the kinds are {', '.join(BLOCKS)}")
    return block.make_params(data or {}, outputs)


def _parse_params(block: type[Block], data: Mapping[str, Any], given: Mapping[str, Any]) -> Any:
    """Build ``block.Params`` from ``data``; ``given``: fields the rule sets itself (not parameters of the JSON)."""
    if not isinstance(data, Mapping):
        raise ParamError(f'the parameters of {block.kind} must be a JSON object, like {{"name": value}}')
    params_class = block.Params
    hints = _hints(params_class)
    names = [item.name for item in fields(params_class) if item.name not in given]
    unknown = [key for key in data if key not in names]
    if unknown:
        listed = ", ".join(names) or "none"
        raise ParamError(f"{block.kind} has no parameter {unknown[0]!r}; its parameters are {listed}")
    kwargs: dict[str, Any] = dict(given)
    for item in fields(params_class):
        if item.name in given:
            continue
        if item.name not in data:
            if item.default is MISSING:
                raise ParamError(f"{block.kind} needs the parameter {item.name!r}")
            continue
        kwargs[item.name] = _param_value(block, item.name, hints[item.name], data[item.name])
    params = params_class(**kwargs)
    params.check()
    return params


def _param_value(block: type[Block], name: str, hint: Any, value: Any) -> Any:
    where = f"{block.kind} parameter {name!r}"
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamError(f"{where} is true or false, not {value!r}")
        return value
    if hint is str:
        choices = block.CHOICES.get(name, ())
        if value not in choices:
            raise ParamError(f"{where} is one of {', '.join(map(repr, choices))}, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParamError(f"{where} must be a finite number, not {value!r}")
    if hint is int:
        if value != int(value):
            raise ParamError(f"{where} must be a whole number, not {value!r}")
        return int(value)
    return float(value)


def _at_least(kind: str, name: str, value: float, low: float, strictly: bool = False) -> None:
    if value < low or (strictly and value == low):
        relation = "above" if strictly else "at least"
        raise ParamError(f"{kind} parameter {name!r} must be {relation} {low:g}, not {value:g}")


# ---- the blocks ----------------------------------------------------------------------------------------------------


class Block:
    """A block: ``params`` (frozen), ``state`` (a :class:`BlockState`), and :meth:`step`."""

    kind: ClassVar[str]
    Params: ClassVar[type]
    State: ClassVar[type[BlockState]]
    #: the choices of string parameters
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, params: Any, state: BlockState | Mapping[str, Any] | None = None) -> None:
        self.params = params
        if state is None or isinstance(state, Mapping):
            state = self.State.from_dict(state)
        self.state = state

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.state}>"

    @classmethod
    def make_params(cls, data: Mapping[str, Any], outputs: int) -> Any:
        if outputs != 1:
            raise ParamError(f"{cls.kind} writes one point, not {outputs}")
        return _parse_params(cls, data, {})

    @classmethod
    def slots(cls, params: Any) -> tuple[Slot, ...]:
        raise NotImplementedError

    @classmethod
    def output_types(cls, params: Any) -> tuple[Type, ...]:
        raise NotImplementedError

    def step(self, now: datetime, **inputs: Any) -> Any:
        raise NotImplementedError

    def next_deadline(self) -> datetime | None:
        """When the block has something to do with unchanged inputs (a timer), or None."""
        return None

    def at_rest(self, inputs: Mapping[str, Any]) -> bool:
        """True if :meth:`step` with ``inputs`` (those of the last step: they have not changed since) would change
        nothing but the block's bookkeeping (when it last stepped). The rule runner then calls :meth:`rest`
        instead of stepping on the rule's cycle: a saturated PID, a settled rate limiter, a totalizer of a zero
        flow stepped every cycle for nothing (issue 12). Default: never (every step may change the state)."""
        return False

    def rest(self, now: datetime) -> None:
        """Exactly what :meth:`step` at ``now`` does to the state while :meth:`at_rest` (its bookkeeping)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return self.state.to_dict()


# -- hysteresis --


@dataclass(frozen=True, slots=True)
class HysteresisParams:
    """``on > off``: true at or above ``on``, false at or below ``off``; ``on < off``: the mirror image."""

    on: float
    off: float

    def check(self) -> None:
        if self.on == self.off:
            raise ParamError("hysteresis parameters 'on' and 'off' must differ: the gap between them is the hysteresis")


@dataclass(slots=True)
class HysteresisState(BlockState):
    output: bool = False


class Hysteresis(Block):
    """A two-position switch with hysteresis (a thermostat). Input ``x`` (number), output bool."""

    kind = "hysteresis"
    Params = HysteresisParams
    State = HysteresisState

    @classmethod
    def slots(cls, params: Any) -> tuple[Slot, ...]:
        return (Slot("x", Type.NUMBER, help="the measured value"),)

    @classmethod
    def output_types(cls, params: Any) -> tuple[Type, ...]:
        return (Type.BOOL,)

    def step(self, now: datetime, x: float) -> bool:
        _check_time(now)
        on, off = self.params.on, self.params.off
        if on > off:
            if x >= on:
                self.state.output = True
            elif x <= off:
                self.state.output = False
        elif x <= on:
            self.state.output = True
        elif x >= off:
            self.state.output = False
        return self.state.output


# -- delay timers --


@dataclass(frozen=True, slots=True)
class DelayParams:
    """``delay``: seconds."""

    delay: float

    def check(self) -> None:
        _at_least("delay timer", "delay", self.delay, 0.0)


@dataclass(slots=True)
class DelayState(BlockState):
    #: the input at the last step
    input: bool = False
    output: bool = False
    #: the input has differed from the output since then
    pending_since: datetime | None = None


class _Delay(Block):
    Params = DelayParams
    State = DelayState
    #: which change of the input waits for ``delay``: True = rising (on-delay), False = falling (off-delay)
    delayed_edge: ClassVar[bool]

    @classmethod
    def slots(cls, params: Any) -> tuple[Slot, ...]:
        return (Slot("x", Type.BOOL, help="the input"),)

    @classmethod
    def output_types(cls, params: Any) -> tuple[Type, ...]:
        return (Type.BOOL,)

    def _delay(self, rising: bool) -> float:
        return self.params.delay if rising == self.delayed_edge else 0.0

    def next_deadline(self) -> datetime | None:
        state = self.state
        if state.pending_since is None:
            return None
        return state.pending_since + timedelta(seconds=self._delay(state.input))

    def step(self, now: datetime, x: bool) -> bool:
        _check_time(now)
        state = self.state
        x = bool(x)
        self._advance(now)  # a timer due before this change fires first
        if x != state.input:
            state.input = x
            state.pending_since = None if x == state.output else now
        self._advance(now)
        return state.output

    def _advance(self, now: datetime) -> None:
        due = self.next_deadline()
        if due is not None and due <= now:
            self.state.output = self.state.input
            self.state.pending_since = None


class OnDelay(_Delay):
    """True once the input has been true for ``delay`` seconds; false as soon as it is false."""

    kind = "on_delay"
    delayed_edge = True


class OffDelay(_Delay):
    """True as soon as the input is true; false once it has been false for ``delay`` seconds."""

    kind = "off_delay"
    delayed_edge = False


# -- PID --

REVERSE, DIRECT = "reverse", "direct"
CLAMP, BACK_CALCULATION = "clamp", "back_calculation"
#: a step sooner than this fraction of the sample time after the last computation holds the output (jitter allowance)
SAMPLE_FRACTION = 0.9
#: a step more than this many sample times after the last one neither integrates nor differentiates over the gap
GAP_SAMPLES = 10.0


@dataclass(frozen=True, slots=True)
class PIDParams:
    """Gains of the parallel form: ``kp`` (output per unit of error), ``ki`` (per unit of error per second),
    ``kd`` (seconds); ``action`` reverse (heating: more output when pv is below sp) or direct; output limits;
    ``sample_time`` seconds; ``d_filter``: time constant (s) of the derivative's first-order filter;
    ``anti_windup``: clamp or back_calculation with ``tracking_time`` (s, 0: automatic)."""

    kp: float = 1.0
    ki: float = 0.0
    kd: float = 0.0
    action: str = REVERSE
    out_min: float = 0.0
    out_max: float = 100.0
    sample_time: float = 1.0
    d_filter: float = 0.0
    anti_windup: str = CLAMP
    tracking_time: float = 0.0

    def check(self) -> None:
        for name in ("kp", "ki", "kd", "d_filter", "tracking_time"):
            _at_least("pid", name, getattr(self, name), 0.0)
        if self.kp == 0 and self.ki == 0 and self.kd == 0:
            raise ParamError("a pid needs at least one of kp, ki and kd above 0")
        _at_least("pid", "sample_time", self.sample_time, 0.05)
        if self.out_min >= self.out_max:
            raise ParamError(f"pid out_min ({self.out_min:g}) must be below out_max ({self.out_max:g})")

    @property
    def tracking(self) -> float:
        """The back-calculation time constant Tt: ``tracking_time``, else sqrt(Ti·Td), else Ti (Ti = kp/ki)."""
        if self.tracking_time > 0:
            return self.tracking_time
        if self.kp > 0 and self.ki > 0:
            integral_time = self.kp / self.ki
            derivative_time = self.kd / self.kp
            return math.sqrt(integral_time * derivative_time) if derivative_time > 0 else integral_time
        return self.sample_time


@dataclass(slots=True)
class PIDState(BlockState):
    #: the integral term, in output units (ki applied as it accumulates, so a new ki causes no bump)
    integral: float = 0.0
    #: the (filtered) derivative term, in output units
    derivative: float = 0.0
    last_pv: float | None = None
    #: when the output was last computed
    last_time: datetime | None = None
    output: float | None = None
    auto: bool = True


class PID(Block):
    """A PID controller. Inputs ``pv``, ``sp`` (numbers), ``auto`` (bool, default true), ``track`` (number,
    optional); output the controller output within ``out_min..out_max``.

    Each computation: ``e = sp - pv`` (reverse) or ``pv - sp`` (direct);
    ``P = kp·e``; ``D`` = ``-kd·Δpv/Δt`` (sign of the action), filtered with
    ``d_filter``; ``I += ki·e·Δt``; output ``clamp(P + I + D)``.

    * **Sample time**: a step sooner than 0.9 times ``sample_time`` after the last
      computation returns the held output (changes of inputs between samples
      do not make a noisy derivative); a step more than 10 sample times later
      (the inputs were bad, the engine stopped) neither integrates nor
      differentiates over that gap.
    * **Anti-windup**: ``clamp`` stops integrating while the output is
      saturated in the direction the error pushes (and keeps the integral
      within the output limits); ``back_calculation`` bleeds the excess of
      the unlimited output back into the integral with time constant
      ``tracking_time``.
    * **Bumpless**: in manual (``auto`` false) the output follows ``track``
      (or holds) and the integral is set to ``output - P - D``, so the switch
      to auto starts from the manual output. A PID without state starts from
      ``track`` too, when given. A state restored with
      :meth:`BlockState.from_dict` continues exactly.
    """

    kind = "pid"
    Params = PIDParams
    State = PIDState
    CHOICES = {"action": (REVERSE, DIRECT), "anti_windup": (CLAMP, BACK_CALCULATION)}

    @classmethod
    def slots(cls, params: Any) -> tuple[Slot, ...]:
        return (
            Slot("pv", Type.NUMBER, help="the process value (measurement)"),
            Slot("sp", Type.NUMBER, help="the setpoint"),
            Slot("auto", Type.BOOL, required=False, default=True, help="false: manual, the output follows track"),
            Slot("track", Type.NUMBER, required=False, help="the output in manual, and where a new PID starts"),
        )

    @classmethod
    def output_types(cls, params: Any) -> tuple[Type, ...]:
        return (Type.NUMBER,)

    def _clamp(self, value: float) -> float:
        return min(max(value, self.params.out_min), self.params.out_max)

    def step(self, now: datetime, pv: float, sp: float, auto: bool = True, track: float | None = None) -> float:
        _check_time(now)
        params, state = self.params, self.state
        sign = 1.0 if params.action == REVERSE else -1.0
        fresh = state.last_time is None or state.output is None
        dt = 0.0 if fresh else _seconds(now, state.last_time)
        if not fresh and auto and state.auto and 0 <= dt < SAMPLE_FRACTION * params.sample_time:
            return state.output
        gap = fresh or dt <= 0 or dt > GAP_SAMPLES * params.sample_time
        error = sign * (sp - pv)
        proportional = params.kp * error
        derivative = state.derivative if params.kd > 0 and not fresh else 0.0
        if params.kd > 0 and not gap and state.last_pv is not None:
            raw = -sign * params.kd * (pv - state.last_pv) / dt
            derivative += (raw - derivative) * dt / (params.d_filter + dt)
        if not auto or (fresh and track is not None):
            if track is not None:
                output = self._clamp(track)
            elif state.output is not None:
                output = state.output
            else:
                output = self._clamp(proportional + derivative)
            state.integral = output - proportional - derivative
        else:
            if fresh:
                state.integral = self._clamp(0.0)
            elif not gap:
                self._integrate(error, proportional, derivative, dt)
            output = self._clamp(proportional + state.integral + derivative)
        state.derivative = derivative
        state.last_pv = pv
        state.last_time = now
        state.output = output
        state.auto = bool(auto)
        return output

    def at_rest(self, inputs: Mapping[str, Any]) -> bool:
        params, state = self.params, self.state
        if state.last_time is None or state.output is None or state.derivative != 0.0:
            return False  # fresh, or a derivative still decaying toward 0
        if state.last_pv != inputs["pv"]:
            return False  # a change that came between two samples: the next sample takes it in
        auto = bool(inputs.get("auto", True))
        if auto != state.auto:
            return False
        error = (1.0 if params.action == REVERSE else -1.0) * (inputs["sp"] - inputs["pv"])
        proportional = params.kp * error
        if not auto:  # manual: the output follows track (or holds), the integral follows the output
            track = inputs.get("track")
            output = self._clamp(track) if track is not None else state.output
            return output == state.output and state.integral == output - proportional
        if self._clamp(proportional + state.integral) != state.output:
            return False  # a change that came between two samples moves the output at the next one
        increment = params.ki * error
        if increment == 0.0:
            if params.anti_windup == CLAMP:
                return True
            unlimited = proportional + state.integral
            return self._clamp(unlimited) == unlimited  # back-calculation bleeds nothing back
        if params.anti_windup != CLAMP:
            return False
        before = proportional + state.integral
        if increment > 0:
            return before >= params.out_max or state.integral >= params.out_max
        return before <= params.out_min or state.integral <= params.out_min

    def rest(self, now: datetime) -> None:
        state = self.state
        dt = _seconds(now, state.last_time)
        if state.auto and 0 <= dt < SAMPLE_FRACTION * self.params.sample_time:
            return  # between samples a step returns the held output and keeps its last time
        state.last_time = now

    def _integrate(self, error: float, proportional: float, derivative: float, dt: float) -> None:
        params, state = self.params, self.state
        increment = params.ki * error * dt
        if params.anti_windup == CLAMP:
            before = proportional + state.integral + derivative
            if increment > 0 and (before >= params.out_max or state.integral >= params.out_max):
                return
            if increment < 0 and (before <= params.out_min or state.integral <= params.out_min):
                return
            state.integral += increment
            return
        unlimited = proportional + state.integral + derivative + increment
        excess = self._clamp(unlimited) - unlimited
        state.integral += increment + excess * min(1.0, dt / params.tracking)


# -- rate limiter --


@dataclass(frozen=True, slots=True)
class RateLimitParams:
    """``rise``: the largest increase per second; ``fall``: the largest decrease per second (0: as ``rise``)."""

    rise: float
    fall: float = 0.0

    def check(self) -> None:
        _at_least("rate_limit", "rise", self.rise, 0.0, strictly=True)
        _at_least("rate_limit", "fall", self.fall, 0.0)


@dataclass(slots=True)
class RateLimitState(BlockState):
    output: float | None = None
    last_time: datetime | None = None


class RateLimiter(Block):
    """The output follows ``x`` at a limited rate; the first step takes ``x`` as it is."""

    kind = "rate_limit"
    Params = RateLimitParams
    State = RateLimitState

    @classmethod
    def slots(cls, params: Any) -> tuple[Slot, ...]:
        return (Slot("x", Type.NUMBER, help="the value to follow"),)

    @classmethod
    def output_types(cls, params: Any) -> tuple[Type, ...]:
        return (Type.NUMBER,)

    def step(self, now: datetime, x: float) -> float:
        _check_time(now)
        state, params = self.state, self.params
        if state.output is None or state.last_time is None:
            state.output = float(x)
        else:
            dt = max(0.0, _seconds(now, state.last_time))
            fall = params.fall or params.rise
            state.output = min(max(float(x), state.output - fall * dt), state.output + params.rise * dt)
        state.last_time = now
        return state.output

    def at_rest(self, inputs: Mapping[str, Any]) -> bool:
        state = self.state
        return state.output is not None and state.last_time is not None and float(inputs["x"]) == state.output

    def rest(self, now: datetime) -> None:
        self.state.last_time = now


# -- totalizer --


@dataclass(frozen=True, slots=True)
class TotalizerParams:
    """``per``: seconds per unit of time of the input (3600 for m³/h -> m³); ``max_gap``: a gap between two
    steps longer than this many seconds is not integrated (0: every gap is)."""

    per: float = 1.0
    max_gap: float = 300.0

    def check(self) -> None:
        _at_least("totalizer", "per", self.per, 0.0, strictly=True)
        _at_least("totalizer", "max_gap", self.max_gap, 0.0)


@dataclass(slots=True)
class TotalizerState(BlockState):
    total: float = 0.0
    last_value: float | None = None
    last_time: datetime | None = None


class Totalizer(Block):
    """The integral of ``x`` over time (trapezoids between steps) divided by ``per``; 0 while ``reset``."""

    kind = "totalizer"
    Params = TotalizerParams
    State = TotalizerState

    @classmethod
    def slots(cls, params: Any) -> tuple[Slot, ...]:
        return (
            Slot("x", Type.NUMBER, help="the rate to integrate (a flow, a power)"),
            Slot("reset", Type.BOOL, required=False, default=False, help="while true the total is 0"),
        )

    @classmethod
    def output_types(cls, params: Any) -> tuple[Type, ...]:
        return (Type.NUMBER,)

    def step(self, now: datetime, x: float, reset: bool = False) -> float:
        _check_time(now)
        state, params = self.state, self.params
        x = float(x)
        if reset:
            state.total = 0.0
        elif state.last_time is not None and state.last_value is not None:
            dt = _seconds(now, state.last_time)
            if dt > 0 and (params.max_gap == 0 or dt <= params.max_gap):
                state.total += (state.last_value + x) / 2.0 * dt / params.per
        state.last_value = x
        state.last_time = now
        return state.total

    def at_rest(self, inputs: Mapping[str, Any]) -> bool:
        state, x = self.state, float(inputs["x"])
        if state.last_time is None or state.last_value != x:
            return False
        return state.total == 0.0 if inputs.get("reset", False) else x == 0.0  # a zero flow adds nothing

    def rest(self, now: datetime) -> None:
        self.state.last_time = now


# -- latch --


@dataclass(frozen=True, slots=True)
class LatchParams:
    """``dominant``: which input wins when both are true (``reset``: an RS flip-flop, ``set``: SR)."""

    dominant: str = "reset"

    def check(self) -> None:
        pass


@dataclass(slots=True)
class LatchState(BlockState):
    output: bool = False


class Latch(Block):
    """A flip-flop: ``set`` makes it true, ``reset`` false, neither holds; both: the dominant one wins."""

    kind = "latch"
    Params = LatchParams
    State = LatchState
    CHOICES = {"dominant": ("reset", "set")}

    @classmethod
    def slots(cls, params: Any) -> tuple[Slot, ...]:
        return (Slot("set", Type.BOOL), Slot("reset", Type.BOOL))

    @classmethod
    def output_types(cls, params: Any) -> tuple[Type, ...]:
        return (Type.BOOL,)

    def step(self, now: datetime, set: bool, reset: bool) -> bool:
        _check_time(now)
        if set and reset:
            self.state.output = self.params.dominant == "set"
        elif set:
            self.state.output = True
        elif reset:
            self.state.output = False
        return self.state.output


# -- lead/lag sequencer --

UP, DOWN = "up", "down"
MAX_UNITS = 16


@dataclass(frozen=True, slots=True)
class SequencerParams:
    """``count`` units (the rule's output points, lead order at first); one more stage when ``demand`` has been
    above ``stage_up`` for ``up_delay`` seconds, one fewer below ``stage_down`` for ``down_delay``; between
    ``min_stages`` and ``max_stages`` (0: all) while enabled; the lead rotated every ``rotate_hours`` (0: never)."""

    count: int
    stage_up: float
    stage_down: float
    up_delay: float = 60.0
    down_delay: float = 300.0
    min_stages: int = 1
    max_stages: int = 0
    rotate_hours: float = 168.0

    def check(self) -> None:
        if not 2 <= self.count <= MAX_UNITS:
            raise ParamError(f"a sequencer runs 2 to {MAX_UNITS} units, not {self.count}")
        if self.stage_down >= self.stage_up:
            raise ParamError(f"sequencer stage_down ({self.stage_down:g}) must be below stage_up ({self.stage_up:g})")
        for name in ("up_delay", "down_delay", "rotate_hours"):
            _at_least("sequencer", name, getattr(self, name), 0.0)
        if not 0 <= self.min_stages <= self.count:
            raise ParamError(f"sequencer min_stages must be from 0 to {self.count}, not {self.min_stages}")
        if not 0 <= self.max_stages <= self.count:
            raise ParamError(f"sequencer max_stages must be from 0 (all) to {self.count}, not {self.max_stages}")
        if self.max_stages and self.max_stages < self.min_stages:
            raise ParamError(
                f"sequencer max_stages ({self.max_stages}) must not be below min_stages ({self.min_stages})"
            )

    @property
    def top(self) -> int:
        return self.max_stages or self.count


@dataclass(slots=True)
class SequencerState(BlockState):
    #: the units (0-based index into the outputs), lead first
    order: list[int] = field(default_factory=list)
    #: how many units should run
    stages: int = 0
    #: seconds each unit has run (by index)
    runtime: list[float] = field(default_factory=list)
    #: what each unit was told at the last step (by index)
    running: list[bool] = field(default_factory=list)
    #: "up", "down" or "": the stage change waiting for its delay
    pending: str = ""
    pending_since: datetime | None = None
    last_time: datetime | None = None
    #: the last rotation (or the first step): the next one is rotate_hours later
    rotated_at: datetime | None = None


class Sequencer(Block):
    """Lead/lag sequencing of ``count`` units (pumps, chillers, boilers); outputs a tuple of bools, one per unit.

    Inputs: ``demand`` (number), ``enable`` (bool, default true: false stops
    every unit at once), ``available_1`` ... ``available_N`` (bool, default
    true). While enabled at least ``min_stages`` units run (at once, without
    delay); ``demand`` above ``stage_up`` for ``up_delay`` seconds starts the
    next unit in the order, below ``stage_down`` for ``down_delay`` stops the
    last one started; each further stage waits its delay again. The running
    units are the first ``stages`` *available* units in the order, so an
    unavailable unit is replaced by the next at once. Each unit's runtime
    accumulates while it is told to run; every ``rotate_hours`` the order
    becomes the units by runtime, least first (ties keep their order), and
    the running set changes over at once.
    """

    kind = "sequencer"
    Params = SequencerParams
    State = SequencerState

    @classmethod
    def make_params(cls, data: Mapping[str, Any], outputs: int) -> Any:
        return _parse_params(cls, data, {"count": outputs})

    @classmethod
    def slots(cls, params: Any) -> tuple[Slot, ...]:
        return (
            Slot("demand", Type.NUMBER, help="the load signal compared with stage_up and stage_down"),
            Slot("enable", Type.BOOL, required=False, default=True, help="false: every unit off"),
            *(
                Slot(f"available_{unit}", Type.BOOL, required=False, default=True, help=f"unit {unit} can run")
                for unit in range(1, params.count + 1)
            ),
        )

    @classmethod
    def output_types(cls, params: Any) -> tuple[Type, ...]:
        return (Type.BOOL,) * params.count

    def _fit(self) -> None:
        """A state of another unit count (the rule was edited) starts again."""
        count, state = self.params.count, self.state
        if sorted(state.order) != list(range(count)) or len(state.runtime) != count or len(state.running) != count:
            runtime = (state.runtime + [0.0] * count)[:count]
            self.state = replace(SequencerState(), order=list(range(count)), runtime=runtime, running=[False] * count)

    def _delay(self, pending: str) -> float:
        return self.params.up_delay if pending == UP else self.params.down_delay

    def next_deadline(self) -> datetime | None:
        state = self.state
        dues = []
        if state.pending and state.pending_since is not None:
            dues.append(state.pending_since + timedelta(seconds=self._delay(state.pending)))
        if self.params.rotate_hours > 0 and state.rotated_at is not None:
            dues.append(state.rotated_at + timedelta(hours=self.params.rotate_hours))
        return min(dues) if dues else None

    def step(self, now: datetime, demand: float, enable: bool = True, **available: bool) -> tuple[bool, ...]:
        _check_time(now)
        self._fit()
        params, state = self.params, self.state
        count = params.count
        unknown = set(available) - {f"available_{unit}" for unit in range(1, count + 1)}
        if unknown:
            raise TypeError(f"unknown sequencer inputs {sorted(unknown)}")
        can_run = [bool(available.get(f"available_{index + 1}", True)) for index in range(count)]
        if state.last_time is not None:
            elapsed = max(0.0, _seconds(now, state.last_time))
            state.runtime = [
                hours + elapsed if on else hours for hours, on in zip(state.runtime, state.running, strict=True)
            ]
        state.last_time = now
        if state.rotated_at is None:
            state.rotated_at = now
        self._rotate(now)
        if not enable:
            state.stages = 0
            state.pending, state.pending_since = "", None
        else:
            top = min(params.top, sum(can_run))
            low = min(params.min_stages, top)
            state.stages = min(max(state.stages, low), params.top)
            self._stage(now, demand, low, top)
        running = [False] * count
        started = 0
        for unit in state.order:
            if started >= state.stages:
                break
            if can_run[unit]:
                running[unit] = True
                started += 1
        state.running = running
        return tuple(running)

    def _rotate(self, now: datetime) -> None:
        if self.params.rotate_hours <= 0:
            return
        state = self.state
        period = timedelta(hours=self.params.rotate_hours)
        if now < state.rotated_at + period:
            return
        position = {unit: rank for rank, unit in enumerate(state.order)}
        state.order = sorted(state.order, key=lambda unit: (state.runtime[unit], position[unit]))
        state.rotated_at += period * ((now - state.rotated_at) // period)

    def _stage(self, now: datetime, demand: float, low: int, top: int) -> None:
        params, state = self.params, self.state
        for _ in range(params.count + 1):  # a late step may owe several stages, one delay apart
            if demand > params.stage_up and state.stages < top:
                wanted = UP
            elif demand < params.stage_down and state.stages > low:
                wanted = DOWN
            else:
                wanted = ""
            if wanted != state.pending:
                state.pending = wanted
                state.pending_since = now if wanted else None
            if not wanted:
                return
            due = state.pending_since + timedelta(seconds=self._delay(wanted))
            if due > now:
                return
            state.stages += 1 if wanted == UP else -1
            state.pending_since = due  # the next stage waits its own delay, counted from this one


#: every block kind
BLOCKS: dict[str, type[Block]] = {
    block.kind: block for block in (Hysteresis, OnDelay, OffDelay, PID, RateLimiter, Totalizer, Latch, Sequencer)
}


def make_block(kind: str, params: Any, state: Mapping[str, Any] | None = None) -> Block:
    """A block of ``kind`` with ``params`` (from :func:`make_params`) and a state from ``to_dict`` (or fresh)."""
    return BLOCKS[kind](params, state)
