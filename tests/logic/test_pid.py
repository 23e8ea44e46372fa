"""The PID block, pure: known answers per term, sample time, a first-order plant that settles, anti-windup,
bumpless transfer from manual and from a replicated state."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from bms.logic.blocks import PID, PIDState, make_block, make_params

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def pid(**params) -> PID:
    return PID(make_params("pid", params))


class Plant:
    """A first-order plant with dead time: ``tau·dy/dt = ambient + gain·u(t - dead) - y``, integrated finely."""

    def __init__(self, tau: float = 60.0, gain: float = 2.0, dead: int = 5, y: float = 20.0, ambient: float = 20.0):
        self.tau, self.gain, self.y, self.ambient = tau, gain, y, ambient
        self.delay = [0.0] * dead

    def step(self, u: float, seconds: float = 1.0) -> float:
        self.delay.append(u)
        applied = self.delay.pop(0)
        for _ in range(20):
            self.y += (self.ambient + self.gain * applied - self.y) / self.tau * seconds / 20
        return self.y


# SIMC tuning for tau 60 s, gain 2, dead time 5 s (tau_c = 5 s): kp = tau / (gain (tau_c + dead)) = 3,
# Ti = min(tau, 4 (tau_c + dead)) = 40 s, so ki = kp / Ti = 0.075 per second
TUNED = {"kp": 3.0, "ki": 0.075, "out_min": 0.0, "out_max": 100.0}


# ---- known answers ---------------------------------------------------------------------------------------------------


def test_proportional_action_reverse_and_direct():
    heating = pid(kp=2.0, out_min=-100.0)
    assert heating.step(at(0), pv=20.0, sp=21.0) == 2.0  # e = sp - pv = 1
    cooling = pid(kp=2.0, action="direct", out_min=-100.0)
    assert cooling.step(at(0), pv=20.0, sp=21.0) == -2.0  # e = pv - sp = -1
    assert pid(kp=2.0, action="direct").step(at(0), pv=20.0, sp=21.0) == 0.0  # clamped to out_min


def test_integral_action_accumulates_ki_e_dt():
    controller = pid(kp=0.0, ki=0.5)
    assert controller.step(at(0), pv=20.0, sp=22.0) == 0.0  # no state: starts from 0, nothing to integrate yet
    assert [controller.step(at(t), pv=20.0, sp=22.0) for t in (1, 2, 3)] == [1.0, 2.0, 3.0]
    assert controller.step(at(5), pv=20.0, sp=22.0) == 5.0  # dt of 2 s
    assert controller.step(at(6), pv=23.0, sp=22.0) == 4.5  # the error reverses


def test_derivative_acts_on_the_measurement_not_on_setpoint_changes():
    controller = pid(kp=1.0, kd=10.0, out_min=-100.0)
    assert controller.step(at(0), pv=20.0, sp=20.0) == 0.0
    assert controller.step(at(1), pv=21.0, sp=20.0) == pytest.approx(-1.0 - 10.0)  # P -1, D -kd * 1 K/s
    assert controller.step(at(2), pv=21.0, sp=30.0) == pytest.approx(9.0)  # a setpoint step: P only, no D kick
    filtered = pid(kp=1.0, kd=10.0, d_filter=1.0, out_min=-100.0)
    filtered.step(at(0), pv=20.0, sp=20.0)
    assert filtered.step(at(1), pv=21.0, sp=20.0) == pytest.approx(
        -1.0 - 5.0
    )  # half the raw derivative: dt / (Tf + dt)


def test_the_output_is_recomputed_once_per_sample_time():
    controller = pid(kp=0.0, ki=1.0, sample_time=10.0)
    controller.step(at(0), pv=0.0, sp=1.0)
    assert controller.step(at(5), pv=0.0, sp=1.0) == 0.0  # held: not yet a sample later
    assert controller.step(at(10), pv=0.0, sp=1.0) == 10.0
    assert controller.step(at(19), pv=0.0, sp=1.0) == 19.0  # 9 s is within the jitter allowance (0.9 sample)
    assert controller.step(at(20), pv=0.0, sp=1.0) == 19.0


def test_a_long_gap_is_neither_integrated_nor_differentiated():
    controller = pid(kp=0.0, ki=1.0, kd=5.0, out_min=-1000.0, out_max=1000.0)
    controller.step(at(0), pv=0.0, sp=1.0)
    controller.step(at(1), pv=0.0, sp=1.0)
    assert controller.step(at(3601), pv=50.0, sp=1.0) == 1.0  # an hour without good inputs: no jump
    assert controller.step(at(3602), pv=50.0, sp=1.0) == pytest.approx(1.0 - 49.0)


# ---- a simulated first-order plant --------------------------------------------------------------------------


def simulate(controller: PID, plant: Plant, seconds: int, sp, start: int = 0) -> list[tuple[int, float, float]]:
    rows = []
    y = plant.y
    for second in range(start, start + seconds):
        u = controller.step(at(second), pv=y, sp=sp(second) if callable(sp) else sp)
        y = plant.step(u)
        rows.append((second, y, u))
    return rows


@pytest.mark.parametrize("anti_windup", ["clamp", "back_calculation"])
@pytest.mark.parametrize("dead", [0, 5])
def test_a_pid_on_a_first_order_plant_settles_without_sustained_oscillation(anti_windup, dead):
    rows = simulate(pid(**TUNED, anti_windup=anti_windup), Plant(dead=dead), 1200, 60.0)
    ys = [y for _, y, _ in rows]
    # overshoot: clamping integrates nothing while the first kick saturates the output; back-calculation (Tt = Ti)
    # lets some integral through, the textbook trade for a faster rise
    assert max(ys) < 60.0 + (0.01 if anti_windup == "clamp" else 0.12) * 40
    settled = next(t for t, _, _ in rows if all(abs(y - 60.0) < 0.4 for _, y, _ in rows[t:]))
    assert settled < 300  # within 1 % of the step in 5 tau
    tail = ys[900:]
    assert max(tail) - min(tail) < 0.01  # no oscillation left
    assert rows[-1][2] == pytest.approx(20.0, abs=0.01)  # the output holding 60 K: ambient 20 + 2 * 20


def test_setpoint_and_disturbance_are_followed():
    plant = Plant()
    controller = pid(**TUNED)
    simulate(controller, plant, 600, 40.0)
    plant.ambient = 10.0  # a disturbance: the output must rise by 5
    rows = simulate(controller, plant, 900, 40.0, start=600)
    assert abs(rows[-1][1] - 40.0) < 0.05 and rows[-1][2] == pytest.approx(15.0, abs=0.05)


class NaivePI:
    """A PI without anti-windup, to show that the scenario below would wind up."""

    def __init__(self, kp: float, ki: float, high: float) -> None:
        self.kp, self.ki, self.high, self.integral = kp, ki, high, 0.0

    def step(self, now: datetime, pv: float, sp: float) -> float:
        error = sp - pv
        self.integral += self.ki * error
        return min(max(self.kp * error + self.integral, 0.0), self.high)


def windup_scenario(controller) -> list[tuple[int, float, float]]:
    """Settled at 35 K; the ambient drops to 0 for an hour (the output saturates: 10 cannot reach 35); then it
    comes back and the error reverses."""
    plant = Plant()
    rows = simulate(controller, plant, 1200, 35.0)
    plant.ambient = 0.0
    rows += simulate(controller, plant, 3600, 35.0, start=1200)
    assert all(u == 10.0 for _, _, u in rows[-600:])  # saturated
    plant.ambient = 20.0
    return simulate(controller, plant, 1200, 35.0, start=4800)


@pytest.mark.parametrize("anti_windup", ["clamp", "back_calculation"])
def test_anti_windup_leaves_saturation_as_soon_as_the_error_reverses(anti_windup):
    naive = windup_scenario(NaivePI(3.0, 0.075, 10.0))
    assert sum(1 for _, y, _ in naive if y > 36.0) > 900  # without anti-windup: stuck at the limit, long overshoot
    rows = windup_scenario(pid(kp=3.0, ki=0.075, out_min=0.0, out_max=10.0, anti_windup=anti_windup))
    crossed = next(t for t, y, _ in rows if y > 35.0)
    left = next(t for t, _, u in rows if u < 10.0)
    assert left - crossed <= 10  # off the limit within a few samples of the error reversing
    assert max(y for _, y, _ in rows) < 36.0  # overshoot under 1 K
    assert sum(1 for _, y, _ in rows if y > 35.3) < 60
    assert abs(rows[-1][1] - 35.0) < 0.05


def test_clamping_keeps_the_integral_within_the_output_limits():
    controller = pid(kp=1.0, ki=1.0, out_min=0.0, out_max=10.0)
    for second in range(1000):
        controller.step(at(second), pv=0.0, sp=5.0)  # P alone is 5; the integral stops when the output reaches 10
    assert controller.state.output == 10.0
    assert controller.state.integral <= 10.0


# ---- bumpless transfer -----------------------------------------------------------------------------------------------


def test_manual_output_follows_track_and_the_switch_to_auto_is_bumpless():
    plant = Plant()
    controller = pid(**TUNED)
    y = plant.y
    for second in range(300):
        u = controller.step(at(second), pv=y, sp=50.0, auto=False, track=12.0)
        assert u == 12.0
        y = plant.step(u)
    first_auto = controller.step(at(300), pv=y, sp=50.0, auto=True, track=12.0)
    error = 50.0 - y
    assert abs(first_auto - 12.0) <= TUNED["ki"] * abs(error) * 1.0 + 1e-9  # only one sample of integral action
    assert controller.state.auto is True


def test_switching_to_manual_without_track_holds_the_last_output():
    controller = pid(**TUNED)
    controller.step(at(0), pv=20.0, sp=22.0)
    last = controller.step(at(1), pv=20.0, sp=22.0)
    assert controller.step(at(1.2), pv=25.0, sp=22.0, auto=False) == last  # mode changes act at once, output held


def test_a_new_pid_starts_from_track():
    controller = pid(**TUNED)
    assert controller.step(at(0), pv=30.0, sp=40.0, track=55.0) == 55.0
    assert controller.step(at(1), pv=30.0, sp=40.0) == pytest.approx(55.0 + 0.075 * 10.0)


@pytest.mark.parametrize("anti_windup", ["clamp", "back_calculation"])
def test_a_state_restored_from_to_dict_continues_exactly(anti_windup):
    """The active node dies after 200 s; the standby has the replicated state and carries on: the same outputs as
    a controller that never stopped, no jump."""
    params = make_params("pid", {**TUNED, "kd": 4.0, "d_filter": 2.0, "anti_windup": anti_windup})
    reference, plant_a = PID(params), Plant()
    active, plant_b = PID(params), Plant()
    simulate(reference, plant_a, 200, 45.0)
    simulate(active, plant_b, 200, 45.0)
    data = json.loads(json.dumps(active.to_dict()))  # as it travels to the standby (msgpack is as faithful)
    assert set(data) >= {"integral", "last_pv", "last_time", "output"}
    standby = make_block("pid", params, data)
    assert isinstance(standby.state, PIDState)
    expected = simulate(reference, plant_a, 400, 45.0, start=200)
    continued = simulate(standby, plant_b, 400, 45.0, start=200)
    assert continued == expected
    assert abs(continued[0][2] - active.state.output) < 1.0  # the first output after the takeover: no bump


def test_taking_over_after_a_pause_does_not_integrate_a_long_gap():
    controller = pid(**TUNED)
    controller.step(at(0), pv=20.0, sp=40.0)
    controller.step(at(1), pv=20.0, sp=40.0)
    before = controller.state.output
    standby = make_block("pid", controller.params, controller.to_dict())
    after = standby.step(at(31), pv=20.0, sp=40.0)  # 30 s later (more than 10 samples): no integral over the gap
    assert after == before
