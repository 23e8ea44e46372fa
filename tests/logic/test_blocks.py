"""The logic blocks other than the PID, pure, against known answers; parameters refused with clear messages;
every state survives to_dict -> JSON -> from_dict and continues exactly."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from bms.logic.blocks import (
    BLOCKS,
    Hysteresis,
    Latch,
    OffDelay,
    OnDelay,
    ParamError,
    RateLimiter,
    Sequencer,
    Totalizer,
    make_block,
    make_params,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = 3600.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def block(kind: str, outputs: int = 1, **params):
    return BLOCKS[kind](make_params(kind, params, outputs))


def moved(old):
    """The same block rebuilt from its state as it travels (JSON), as on a node that takes over."""
    return make_block(old.kind, old.params, json.loads(json.dumps(old.to_dict())))


# ---- hysteresis --------------------------------------------------------------------------------------------------


def test_hysteresis_high_acting_switches_at_on_and_off_and_holds_between():
    cooling = block("hysteresis", on=26.0, off=24.0)
    seen = [cooling.step(at(i), x=x) for i, x in enumerate([23, 25, 25.9, 26, 25, 24.1, 24, 25, 30])]
    assert seen == [False, False, False, True, True, True, False, False, True]


def test_hysteresis_low_acting_is_the_mirror_image():
    heating = block("hysteresis", on=18.0, off=20.0)
    seen = [heating.step(at(i), x=x) for i, x in enumerate([21, 19, 18, 19, 19.9, 20, 19])]
    assert seen == [False, False, True, True, True, False, False]
    assert isinstance(heating, Hysteresis)


# ---- delay timers ------------------------------------------------------------------------------------------------


def test_on_delay_turns_on_after_the_delay_and_off_at_once():
    timer = block("on_delay", delay=10.0)
    assert isinstance(timer, OnDelay)
    assert timer.step(at(0), x=True) is False
    assert timer.next_deadline() == at(10)
    assert timer.step(at(9.9), x=True) is False
    assert timer.step(at(10), x=True) is True  # due exactly at since + delay
    assert timer.next_deadline() is None
    assert timer.step(at(11), x=False) is False  # off at once


def test_on_delay_restarts_when_the_input_drops_before_the_delay():
    timer = block("on_delay", delay=10.0)
    timer.step(at(0), x=True)
    assert timer.step(at(5), x=False) is False and timer.next_deadline() is None
    timer.step(at(6), x=True)
    assert timer.step(at(15), x=True) is False  # 9 s since it came back
    assert timer.step(at(16), x=True) is True


def test_off_delay_turns_on_at_once_and_off_after_the_delay():
    timer = block("off_delay", delay=30.0)
    assert isinstance(timer, OffDelay)
    assert timer.step(at(0), x=True) is True
    assert timer.step(at(10), x=False) is True
    assert timer.next_deadline() == at(40)
    assert timer.step(at(20), x=True) is True and timer.next_deadline() is None  # back before the delay: stays on
    timer.step(at(25), x=False)
    assert timer.step(at(54.9), x=False) is True
    assert timer.step(at(55), x=False) is False


def test_a_timer_fires_at_its_due_time_even_when_stepped_late_and_continues_on_another_node():
    timer = block("on_delay", delay=10.0)
    timer.step(at(0), x=True)
    taken_over = moved(timer)  # the state reached the standby at t=0; it takes over at t=30
    assert taken_over.next_deadline() == at(10)
    assert taken_over.step(at(30), x=True) is True
    late = block("on_delay", delay=10.0)
    late.step(at(0), x=True)
    assert late.step(at(12), x=False) is False  # the on-delay fired at 10, the input dropped at 12
    assert late.state.pending_since is None


# ---- rate limiter ------------------------------------------------------------------------------------------------


def test_rate_limiter_follows_at_its_rise_and_fall_rates():
    limiter = block("rate_limit", rise=2.0, fall=5.0)
    assert isinstance(limiter, RateLimiter)
    assert limiter.step(at(0), x=10.0) == 10.0  # the first value is taken as it is
    assert [limiter.step(at(t), x=20.0) for t in (1, 2, 3, 4, 5, 6)] == [12, 14, 16, 18, 20, 20]
    assert [limiter.step(at(t), x=0.0) for t in (7, 8, 9, 10, 11)] == [15, 10, 5, 0, 0]
    symmetric = block("rate_limit", rise=1.0)
    symmetric.step(at(0), x=0.0)
    assert symmetric.step(at(3), x=-10.0) == -3.0  # fall 0: as rise
    assert moved(symmetric).step(at(5), x=-10.0) == -5.0


# ---- totalizer ---------------------------------------------------------------------------------------------------


def test_totalizer_integrates_by_trapezoids_over_its_time_unit():
    meter = block("totalizer", per=HOUR)  # m3/h -> m3
    assert isinstance(meter, Totalizer)
    meter.step(at(0), x=10.0)
    for minute in range(1, 61):
        total = meter.step(at(minute * 60), x=10.0)
    assert total == pytest.approx(10.0)
    ramp = block("totalizer")  # per second: a ramp 0 -> 10 over 10 s is 50
    for second in range(11):
        total = ramp.step(at(second), x=float(second))
    assert total == pytest.approx(50.0)


def test_totalizer_reset_and_gaps():
    meter = block("totalizer", per=1.0, max_gap=60.0)
    meter.step(at(0), x=1.0)
    assert meter.step(at(10), x=1.0) == pytest.approx(10.0)
    assert meter.step(at(200), x=1.0) == pytest.approx(10.0)  # a 190 s gap (input bad, takeover) is not guessed
    assert meter.step(at(210), x=1.0) == pytest.approx(20.0)
    assert meter.step(at(220), x=1.0, reset=True) == 0.0
    assert meter.step(at(230), x=1.0, reset=True) == 0.0  # held at 0 while reset
    assert moved(meter).step(at(240), x=3.0) == pytest.approx(20.0)  # (1 + 3) / 2 * 10, from the replicated state


# ---- latch -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dominant", "both"), [("reset", False), ("set", True)])
def test_latch_sets_resets_holds_and_the_dominant_input_wins(dominant, both):
    latch = block("latch", dominant=dominant)
    assert isinstance(latch, Latch)
    assert latch.step(at(0), set=False, reset=False) is False
    assert latch.step(at(1), set=True, reset=False) is True
    assert latch.step(at(2), set=False, reset=False) is True  # holds
    assert latch.step(at(3), set=False, reset=True) is False
    assert latch.step(at(4), set=False, reset=False) is False
    assert latch.step(at(5), set=True, reset=True) is both
    assert moved(latch).step(at(6), set=False, reset=False) is both


# ---- sequencer ---------------------------------------------------------------------------------------------------


def pumps(**params):
    defaults = {"stage_up": 90.0, "stage_down": 30.0, "up_delay": 60.0, "down_delay": 120.0, "rotate_hours": 0.0}
    return block("sequencer", outputs=3, **{**defaults, **params})


def test_sequencer_stages_up_and_down_with_delays_lead_first():
    seq = pumps()
    assert isinstance(seq, Sequencer)
    assert seq.step(at(0), demand=50.0) == (True, False, False)  # min_stages 1: the lead runs at once
    assert seq.step(at(10), demand=95.0) == (True, False, False)
    assert seq.next_deadline() == at(70)
    assert seq.step(at(69), demand=95.0) == (True, False, False)
    assert seq.step(at(70), demand=95.0) == (True, True, False)
    assert seq.step(at(129), demand=95.0) == (True, True, False)  # each stage waits its own delay
    assert seq.step(at(130), demand=95.0) == (True, True, True)
    assert seq.step(at(500), demand=95.0) == (True, True, True)  # all running: nothing pending
    assert seq.next_deadline() is None
    assert seq.step(at(600), demand=50.0) == (True, True, True)  # between the thresholds: holds
    seq.step(at(700), demand=20.0)
    assert seq.step(at(819), demand=20.0) == (True, True, True)
    assert seq.step(at(820), demand=20.0) == (True, True, False)  # the last started stops first
    assert seq.step(at(940), demand=20.0) == (True, False, False)
    assert seq.step(at(5000), demand=0.0) == (True, False, False)  # min_stages


def test_sequencer_owes_several_stages_to_a_late_step_one_delay_apart():
    seq = pumps()
    seq.step(at(0), demand=95.0)
    assert seq.step(at(125), demand=95.0) == (True, True, True)  # due at 60 and 120
    assert seq.step(at(130), demand=20.0) == (True, True, True)


def test_sequencer_enable_and_availability():
    seq = pumps(min_stages=1, max_stages=2)
    assert seq.step(at(0), demand=95.0, enable=False) == (False, False, False)
    assert seq.step(at(1), demand=95.0) == (True, False, False)
    assert seq.step(at(61), demand=95.0) == (True, True, False)
    assert seq.step(at(200), demand=95.0) == (True, True, False)  # max_stages 2
    assert seq.step(at(201), demand=95.0, available_1=False) == (False, True, True)  # unit 3 replaces unit 1 at once
    assert seq.step(at(202), demand=95.0) == (True, True, False)  # unit 1 is back
    assert seq.step(at(203), demand=95.0, enable=False) == (False, False, False)  # off at once
    with pytest.raises(TypeError, match="unknown sequencer inputs"):
        seq.step(at(204), demand=1.0, available_4=True)


def test_sequencer_rotates_the_lead_by_runtime_at_its_interval():
    seq = pumps(rotate_hours=24.0)
    day = 24 * HOUR
    assert seq.step(at(0), demand=50.0) == (True, False, False)
    assert seq.next_deadline() == at(day)
    assert seq.step(at(day - 10 * 60), demand=95.0) == (True, False, False)  # pump 2 joins for the last minutes
    assert seq.step(at(day - 9 * 60), demand=95.0) == (True, True, False)
    assert seq.step(at(day - 1), demand=50.0) == (True, True, False)
    assert seq.state.runtime == [day - 1, 9 * 60 - 1, 0.0]
    assert seq.step(at(day), demand=50.0) == (False, True, True)  # order by runtime: 3, 2, 1; two stages
    assert seq.state.order == [2, 1, 0]
    assert seq.next_deadline() == at(2 * day)
    seq.step(at(day + 1), demand=20.0)
    assert seq.step(at(day + 121), demand=20.0) == (False, False, True)  # pump 3 now leads
    # the next day: pump 3 has run one day, pump 2 about 9 minutes more than before, pump 1 the most
    assert seq.step(at(2 * day), demand=20.0) == (False, True, False)
    assert seq.state.order == [1, 2, 0]


def test_sequencer_runtimes_and_order_continue_on_the_node_that_takes_over():
    seq = pumps(rotate_hours=1.0)
    seq.step(at(0), demand=50.0)
    seq.step(at(1800), demand=50.0)
    taken_over = moved(seq)
    assert taken_over.state.runtime == [1800.0, 0.0, 0.0] and taken_over.state.order == [0, 1, 2]
    assert taken_over.step(at(3600), demand=50.0) == (False, True, False)  # rotated on schedule, from the state
    assert taken_over.state.runtime == [3600.0, 0.0, 0.0]


def test_sequencer_state_of_another_unit_count_starts_again():
    seq = pumps()
    seq.step(at(0), demand=50.0)
    four = block("sequencer", outputs=4, stage_up=90.0, stage_down=30.0)
    reused = make_block("sequencer", four.params, seq.to_dict())
    assert reused.step(at(10), demand=50.0) == (True, False, False, False)


# ---- parameters and states ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params", "outputs", "match"),
    [
        ("hysteresis", {"on": 1.0}, 1, "hysteresis needs the parameter 'off'"),
        ("hysteresis", {"on": 1.0, "off": 1.0}, 1, "'on' and 'off' must differ"),
        ("hysteresis", {"on": 1, "off": 0, "of": 2}, 1, "hysteresis has no parameter 'of'; its parameters are on, off"),
        ("on_delay", {"delay": -1}, 1, "'delay' must be at least 0, not -1"),
        ("on_delay", {"delay": "10"}, 1, "'delay' must be a finite number, not '10'"),
        ("on_delay", {"delay": True}, 1, "must be a finite number, not True"),
        ("pid", {"kp": 0}, 1, "at least one of kp, ki and kd above 0"),
        ("pid", {"out_min": 10, "out_max": 10}, 1, r"out_min \(10\) must be below out_max \(10\)"),
        ("pid", {"action": "forward"}, 1, "'action' is one of 'reverse', 'direct', not 'forward'"),
        ("pid", {"kp": float("inf")}, 1, "must be a finite number"),
        ("pid", {"sample_time": 0}, 1, "'sample_time' must be at least 0.05"),
        ("pid", {}, 2, "pid writes one point, not 2"),
        ("rate_limit", {"rise": 0}, 1, "'rise' must be above 0"),
        ("totalizer", {"per": 0}, 1, "'per' must be above 0"),
        ("latch", {"dominant": "both"}, 1, "'dominant' is one of 'reset', 'set'"),
        ("sequencer", {"stage_up": 50, "stage_down": 60}, 3, r"stage_down \(60\) must be below stage_up \(50\)"),
        ("sequencer", {"stage_up": 90, "stage_down": 30}, 1, "a sequencer runs 2 to 16 units, not 1"),
        ("sequencer", {"stage_up": 90, "stage_down": 30, "min_stages": 4}, 3, "min_stages must be from 0 to 3"),
        ("sequencer", {"stage_up": 90, "stage_down": 30, "min_stages": 1.5}, 3, "must be a whole number"),
        ("sequencer", {"stage_up": 90, "stage_down": 30, "count": 3}, 3, "sequencer has no parameter 'count'"),
        ("sequencer", {"stage_up": 9, "stage_down": 3, "min_stages": 2, "max_stages": 1}, 3, "must not be below"),
        ("pidd", {}, 1, "unknown block kind 'pidd'"),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_message(kind, params, outputs, match):
    with pytest.raises(ParamError, match=match):
        make_params(kind, params, outputs)


def test_parameters_must_be_an_object():
    with pytest.raises(ParamError, match="must be a JSON object"):
        make_params("pid", [1, 2])


def test_states_are_small_json_safe_dicts_with_defaults_left_out():
    timer = block("on_delay", delay=5.0)
    assert timer.to_dict() == {}
    timer.step(at(0), x=True)
    assert timer.to_dict() == {
        "input": True,
        "pending_since": (at(0) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),
    }
    assert json.loads(json.dumps(timer.to_dict())) == timer.to_dict()
    assert type(timer.state).from_dict({"input": True, "from_a_newer_node": 1}).input is True  # unknown keys ignored


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        block("latch").step(datetime(2026, 3, 1), set=True, reset=False)
