"""The role state machine, scenario by scenario (pure: no I/O, exact times)."""

from __future__ import annotations

import pytest

from redundancy.roles import Decision, Facts, PeerView, Role, RoleMachine, Timing

TIMING = Timing(timeout=0.3, startup_allowance=2.0, hold_down=5.0, handover_timeout=1.0)


def machine(node="backup", preferred=False, epoch=0, failback_auto=True, witness=False, role=Role.STARTING, now=0.0):
    m = RoleMachine(node, preferred, epoch, TIMING, failback_auto, witness, now)
    if role != Role.STARTING:
        m.enter(Decision(role, epoch, "test setup"), now)
    return m


def peer(role, epoch=1, preferred=True, caught_up=False, silent_for=0.05, node="main"):
    return PeerView(node, Role(role), epoch, preferred, caught_up, silent_for)


def test_starting_node_waits_the_startup_allowance_for_a_silent_partner():
    m = machine()
    assert m.decide(Facts(now=1.9, peer=None)) is None
    decision = m.decide(Facts(now=2.0, peer=None))
    assert decision.role == Role.ACTIVE and decision.epoch == 1
    assert "startup allowance" in decision.reason


def test_syncing_node_at_start_up_waits_the_allowance_before_taking_over_from_a_silent_partner():
    # Cold start: the backup saw main starting and deferred to it; main then went quiet
    # (a loaded machine while it starts). Only after the startup allowance may the backup act.
    m = machine()
    m.enter(m.decide(Facts(now=0.1, peer=peer("starting", epoch=0))), 0.1)
    assert m.role == Role.SYNCING
    assert m.decide(Facts(now=1.9, peer=peer("starting", epoch=0, silent_for=1.0))) is None
    decision = m.decide(Facts(now=2.0, peer=peer("starting", epoch=0, silent_for=1.1)))
    assert decision.role == Role.ACTIVE and decision.epoch == 1
    assert "silent for 1100 ms" in decision.reason


def test_node_that_was_standby_takes_over_after_the_timeout_even_soon_after_start():
    m = machine()
    m.enter(Decision(Role.SYNCING, 1, "partner active"), 0.1)
    m.enter(Decision(Role.STANDBY, 1, "caught up"), 0.5)
    decision = m.decide(Facts(now=0.9, peer=peer("active", epoch=1, silent_for=0.31)))
    assert decision.role == Role.ACTIVE and decision.epoch == 2


def test_starting_node_follows_an_active_partner_and_adopts_its_epoch():
    m = machine(epoch=2)
    decision = m.decide(Facts(now=0.1, peer=peer("active", epoch=7)))
    assert decision == Decision(Role.SYNCING, 7, decision.reason)


def test_restarted_main_that_was_active_comes_up_syncing_never_active():
    main = machine(node="main", preferred=True, epoch=5)  # its database says it was active in epoch 5
    decision = main.decide(Facts(now=0.2, peer=peer("active", epoch=6, preferred=False, node="backup")))
    assert decision.role == Role.SYNCING


def test_restarted_main_defers_to_a_standby_that_holds_the_state():
    main = machine(node="main", preferred=True, epoch=5)
    decision = main.decide(Facts(now=0.2, peer=peer("standby", epoch=5, preferred=False, node="backup")))
    assert decision.role == Role.SYNCING
    backup = machine(node="backup", epoch=5, role=Role.STANDBY)
    decision = backup.decide(Facts(now=0.2, peer=peer("starting", epoch=5, preferred=True, node="main")))
    assert decision.role == Role.ACTIVE and decision.epoch == 6


def test_cold_start_of_both_nodes_gives_exactly_one_active():
    main = machine(node="main", preferred=True)
    backup = machine(node="backup", preferred=False)
    on_main = main.decide(Facts(now=0.1, peer=peer("starting", epoch=0, preferred=False, node="backup")))
    on_backup = backup.decide(Facts(now=0.1, peer=peer("starting", epoch=0, preferred=True, node="main")))
    assert [on_main.role, on_backup.role] == [Role.ACTIVE, Role.SYNCING]


def test_cold_start_without_preference_is_decided_by_name():
    a = machine(node="alpha", preferred=False)
    b = machine(node="beta", preferred=False)
    on_a = a.decide(Facts(now=0.1, peer=peer("starting", epoch=0, preferred=False, node="beta")))
    on_b = b.decide(Facts(now=0.1, peer=peer("starting", epoch=0, preferred=False, node="alpha")))
    assert {on_a.role, on_b.role} == {Role.ACTIVE, Role.SYNCING}


def test_syncing_becomes_standby_only_when_caught_up():
    m = machine(role=Role.SYNCING, epoch=1)
    assert m.decide(Facts(now=1, peer=peer("active"), caught_up=False)) is None
    assert m.decide(Facts(now=1, peer=peer("active"), caught_up=True)).role == Role.STANDBY


def test_standby_takes_over_after_the_timeout_with_epoch_plus_one():
    m = machine(role=Role.STANDBY, epoch=3)
    assert m.decide(Facts(now=5, peer=peer("active", epoch=3, silent_for=0.29))) is None
    decision = m.decide(Facts(now=5, peer=peer("active", epoch=3, silent_for=0.3)))
    assert decision.role == Role.ACTIVE and decision.epoch == 4


def test_with_a_witness_takeover_needs_its_confirmation_else_isolated():
    m = machine(role=Role.STANDBY, epoch=3, witness=True)
    silent = peer("active", epoch=3, silent_for=1.0)
    assert m.decide(Facts(now=5, peer=silent, witness=None)).role == Role.ISOLATED
    assert m.decide(Facts(now=5, peer=silent, witness=False)).role == Role.ISOLATED
    m.enter(Decision(Role.ISOLATED, 3, "test"), 5)
    assert m.decide(Facts(now=6, peer=silent, witness=False)) is None
    assert m.decide(Facts(now=6, peer=silent, witness=True)).role == Role.ACTIVE


def test_isolated_node_resyncs_when_the_active_partner_is_heard_again():
    m = machine(role=Role.ISOLATED, epoch=3, witness=True)
    assert m.decide(Facts(now=6, peer=peer("active", epoch=3))).role == Role.SYNCING


def test_active_node_steps_down_at_once_for_a_higher_epoch():
    m = machine(node="main", preferred=True, role=Role.ACTIVE, epoch=4)
    decision = m.decide(Facts(now=9, peer=peer("active", epoch=5, preferred=False, node="backup")))
    assert decision.role == Role.SYNCING and decision.epoch == 5


def test_active_node_keeps_control_against_a_lower_epoch():
    m = machine(node="main", preferred=True, role=Role.ACTIVE, epoch=6)
    assert m.decide(Facts(now=9, peer=peer("active", epoch=5, preferred=False, node="backup"))) is None


def test_two_actives_in_one_epoch_the_preferred_node_wins():
    main = machine(node="main", preferred=True, role=Role.ACTIVE, epoch=4)
    backup = machine(node="backup", preferred=False, role=Role.ACTIVE, epoch=4)
    assert main.decide(Facts(now=9, peer=peer("active", epoch=4, preferred=False, node="backup"))) is None
    assert backup.decide(Facts(now=9, peer=peer("active", epoch=4, preferred=True, node="main"))).role == Role.SYNCING


def test_active_node_ignores_a_silent_partner():
    m = machine(role=Role.ACTIVE, epoch=4)
    assert m.decide(Facts(now=9, peer=peer("standby", epoch=4, silent_for=60))) is None


@pytest.mark.parametrize("auto", [True, False])
def test_failback_to_the_preferred_node_after_the_hold_down_only_when_automatic(auto):
    backup = machine(role=Role.ACTIVE, epoch=4, failback_auto=auto, now=100.0)
    ready = peer("standby", epoch=4, preferred=True, caught_up=True)
    assert backup.decide(Facts(now=104.9, peer=ready)) is None  # hold-down
    decision = backup.decide(Facts(now=105.0, peer=ready))
    assert (decision is not None and decision.role == Role.HANDING_OVER) is auto


def test_no_failback_before_the_preferred_node_has_caught_up():
    backup = machine(role=Role.ACTIVE, epoch=4)
    assert backup.decide(Facts(now=100, peer=peer("standby", epoch=4, caught_up=False))) is None


def test_switchover_request_hands_over_in_either_direction_once_the_partner_is_ready():
    main = machine(node="main", preferred=True, role=Role.ACTIVE, epoch=4)
    not_ready = peer("standby", epoch=4, preferred=False, caught_up=False, node="backup")
    ready = peer("standby", epoch=4, preferred=False, caught_up=True, node="backup")
    assert main.decide(Facts(now=1, peer=not_ready, switchover_requested=True)) is None
    assert main.decide(Facts(now=1, peer=ready, switchover_requested=False)) is None
    assert main.decide(Facts(now=1, peer=ready, switchover_requested=True)).role == Role.HANDING_OVER


def test_handover_completes_when_the_partner_is_active_in_the_next_epoch():
    backup = machine(role=Role.HANDING_OVER, epoch=4, now=10)
    assert backup.decide(Facts(now=10.2, peer=peer("standby", epoch=4))) is None
    decision = backup.decide(Facts(now=10.2, peer=peer("active", epoch=5)))
    assert decision.role == Role.STANDBY and decision.epoch == 5


def test_handover_not_taken_resumes_control_in_a_new_epoch():
    backup = machine(role=Role.HANDING_OVER, epoch=4, now=10)
    decision = backup.decide(Facts(now=11.0, peer=peer("standby", epoch=4)))
    assert decision.role == Role.ACTIVE and decision.epoch == 5


def test_observe_epoch_moves_only_up_and_only_outside_control():
    standby = machine(role=Role.STANDBY, epoch=3)
    assert standby.observe_epoch(5) and standby.epoch == 5
    assert not standby.observe_epoch(4) and standby.epoch == 5
    active = machine(role=Role.ACTIVE, epoch=3)
    assert not active.observe_epoch(9) and active.epoch == 3


# -- flap damping (ADR 0010) -------------------------------------------------------------------------------------

DAMPED = Timing(timeout=0.3, startup_allowance=2.0, hold_down=5.0, handover_timeout=1.0, flap_window=10.0)


def damped(node="backup", preferred=False, epoch=3, role=Role.STANDBY, now=0.0, timing=DAMPED, failback_auto=True):
    m = RoleMachine(node, preferred, epoch, timing, failback_auto, False, now)
    m.enter(Decision(role, epoch, "test setup"), now)
    return m


def lose_link(m, now, silent_for=0.5):
    """One outage of ``silent_for`` seconds that ends at ``now`` (every connection dropped meanwhile)."""
    m.link_dropped()
    assert m.partner_heard(now, silent_for)


def test_a_loss_is_a_dropped_link_or_a_silence_of_the_timeout_and_counts_when_the_partner_is_back():
    m = damped()
    assert not m.partner_heard(1.0, 0.29)  # a late heartbeat is no loss
    assert m.link_losses(1.0) == 0
    m.link_dropped()
    assert m.link_losses(1.1) == 0  # the outage in progress does not count yet
    assert m.partner_heard(1.15, 0.05)  # a dropped connection counts, however short
    assert not m.partner_heard(1.2, 0.05)  # the next message is no new loss
    assert m.partner_heard(2.0, 0.3)  # silence of the timeout on a connection that stayed up
    assert m.link_losses(2.0) == 2


def test_the_first_failure_after_a_quiet_window_is_taken_over_after_the_plain_timeout():
    m = damped()
    m.link_dropped()  # the partner crashed: its connections closed, it is never heard again
    assert m.takeover_delay(5.0) == 0.3
    assert m.decide(Facts(now=5.0, peer=peer("active", epoch=3, silent_for=0.29))) is None
    decision = m.decide(Facts(now=5.0, peer=peer("active", epoch=3, silent_for=0.3)))
    assert decision.role == Role.ACTIVE and decision.epoch == 4
    assert "damped" not in decision.reason


def test_each_recent_link_loss_doubles_the_takeover_delay_up_to_the_cap():
    m = damped()
    delays = []
    for n in range(5):
        lose_link(m, 1.0 + n)
        delays.append(m.takeover_delay(1.0 + n))
    assert delays == pytest.approx([0.6, 1.2, 2.4, 2.4, 2.4])  # cap: 8 x timeout
    now = 5.5
    assert m.decide(Facts(now=now, peer=peer("active", epoch=3, silent_for=2.39))) is None
    decision = m.decide(Facts(now=now, peer=peer("active", epoch=3, silent_for=2.4)))
    assert decision.role == Role.ACTIVE
    assert "silent for 2400 ms (timeout 300 ms, damped to 2400 ms: 5 link losses within 10 s)" in decision.reason


def test_a_configured_cap_bounds_the_delay():
    timing = Timing(0.3, 2.0, 5.0, 1.0, flap_window=10.0, max_takeover_delay=1.0)
    m = damped(timing=timing)
    for n in range(4):
        lose_link(m, 1.0 + n)
    assert m.takeover_delay(4.0) == 1.0


def test_the_delay_decays_back_to_the_timeout_as_losses_leave_the_window():
    m = damped()
    lose_link(m, 1.0)
    lose_link(m, 2.0)
    assert m.takeover_delay(10.99) == pytest.approx(1.2)
    assert m.takeover_delay(11.0) == pytest.approx(0.6)  # the first loss is 10 s old
    assert m.takeover_delay(12.0) == pytest.approx(0.3)
    decision = m.decide(Facts(now=12.0, peer=peer("active", epoch=3, silent_for=0.3)))
    assert decision.role == Role.ACTIVE and "damped" not in decision.reason


def test_a_node_that_stepped_down_demands_one_doubling_more_during_the_hold_down():
    main = damped(node="main", preferred=True, role=Role.ACTIVE, epoch=3)
    step_down = main.decide(Facts(now=10.0, peer=peer("active", epoch=4, preferred=False, node="backup")))
    assert step_down.role == Role.SYNCING
    main.enter(step_down, 10.0)
    main.enter(Decision(Role.STANDBY, 4, "caught up"), 10.2)
    backup_silent = peer("active", epoch=4, preferred=False, node="backup", silent_for=0.59)
    assert main.takeover_delay(14.99) == pytest.approx(0.6)
    assert main.decide(Facts(now=14.99, peer=backup_silent)) is None
    assert main.takeover_delay(15.0) == pytest.approx(0.3)  # hold-down over
    decision = main.decide(Facts(now=15.0, peer=backup_silent))
    assert decision.role == Role.ACTIVE and decision.epoch == 5


def test_a_node_that_handed_over_does_not_take_control_straight_back():
    backup = damped(role=Role.HANDING_OVER, epoch=4, now=10.0)
    done = backup.decide(Facts(now=10.1, peer=peer("active", epoch=5)))
    backup.enter(done, 10.1)
    assert backup.role == Role.STANDBY
    assert backup.decide(Facts(now=11.0, peer=peer("active", epoch=5, silent_for=0.5))) is None
    assert backup.decide(Facts(now=11.0, peer=peer("active", epoch=5, silent_for=0.6))).role == Role.ACTIVE


def test_losses_before_the_node_has_settled_do_not_count():
    m = RoleMachine("backup", False, 0, DAMPED, True, False, 0.0)
    m.link_dropped()
    assert not m.partner_heard(0.5, 1.0)
    assert m.link_losses(0.5) == 0


def test_a_zero_window_turns_damping_off():
    timing = Timing(0.3, 2.0, 5.0, 1.0, flap_window=0.0)
    m = damped(timing=timing)
    for n in range(3):
        lose_link(m, 1.0 + n)
    assert (m.link_losses(3.0), m.takeover_delay(3.0)) == (0, 0.3)


def test_automatic_failback_waits_for_the_hold_down_after_the_last_loss_and_not_while_flapping():
    backup = damped(role=Role.ACTIVE, epoch=4, now=100.0)
    ready = peer("standby", epoch=4, preferred=True, caught_up=True)
    lose_link(backup, 103.0)
    assert backup.decide(Facts(now=107.99, peer=ready)) is None  # entered at 100, but the link was lost at 103
    assert backup.decide(Facts(now=108.0, peer=ready)).role == Role.HANDING_OVER
    lose_link(backup, 104.0)
    assert backup.flapping(112.99)
    assert backup.decide(Facts(now=112.99, peer=ready)) is None  # the hold-down passed, but two losses in the window
    # An operator's switchover is not automatic: it goes ahead.
    assert backup.decide(Facts(now=112.99, peer=ready, switchover_requested=True)).role == Role.HANDING_OVER
    assert backup.decide(Facts(now=113.0, peer=ready)).role == Role.HANDING_OVER  # the loss at 103 left the window


def test_an_unconfirmed_handover_resumes_control_only_after_the_damped_delay():
    backup = damped(role=Role.HANDING_OVER, epoch=4, now=10.0)
    lose_link(backup, 9.0)  # the link has been lost once recently: delay 0.6 s
    assert backup.decide(Facts(now=11.0, peer=peer("standby", epoch=4, silent_for=0.59))) is None
    decision = backup.decide(Facts(now=11.0, peer=peer("standby", epoch=4, silent_for=0.6)))
    assert decision.role == Role.ACTIVE and decision.epoch == 5


def simulate_flapping_link(
    timing: Timing, failback_auto=True, duration=60.0, cut=0.5, every=2.0, period=0.1, step=0.01
):
    """The issue's scenario with two pure machines: the link is cut for ``cut`` s every ``every`` s.

    While the link is up each node hears its partner every ``period`` and at
    once when the link comes back; a standby that syncs is caught up at once.
    Returns (takeovers, role changes, seconds with both nodes active).
    """
    nodes = {
        "main": damped("main", True, 1, Role.ACTIVE, timing=timing, failback_auto=failback_auto),
        "backup": damped("backup", False, 1, Role.STANDBY, timing=timing, failback_auto=failback_auto),
    }
    other = {"main": "backup", "backup": "main"}
    heard = dict.fromkeys(nodes, 0.0)
    seen = {name: (nodes[other[name]].role, nodes[other[name]].epoch) for name in nodes}
    takeovers, changes, both_active, was_up = 0, 0, 0.0, True
    for tick in range(round(duration / step)):
        now = tick * step
        up = now % every >= cut
        for name, m in nodes.items():
            if was_up and not up:
                m.link_dropped()
            if up and (not was_up or tick % round(period / step) == 0):
                m.partner_heard(now, now - heard[name])
                heard[name] = now
                seen[name] = (nodes[other[name]].role, nodes[other[name]].epoch)
                m.observe_epoch(seen[name][1])
        for name, m in nodes.items():
            role, epoch = seen[name]
            view = PeerView(other[name], role, epoch, name == "backup", True, now - heard[name])
            decision = m.decide(Facts(now=now, peer=view, caught_up=True))
            assert decision is None or decision.role != Role.HANDING_OVER, "no failback over a flapping link"
            if decision is not None:
                takeovers += decision.role == Role.ACTIVE
                changes += 1
                m.enter(decision, now)
        both_active += step * all(m.role == Role.ACTIVE for m in nodes.values())
        was_up = up
    return takeovers, changes, both_active


def test_a_flapping_link_gives_one_takeover_a_minute_not_one_per_cut():
    # The figures (cut 0.5 s every 2 s for a minute, 100 ms / 300 ms, hold-down 2 s).
    timing = Timing(timeout=0.3, startup_allowance=2.0, hold_down=2.0, handover_timeout=1.0, flap_window=60.0)
    takeovers, changes, both_active = simulate_flapping_link(timing)
    assert (takeovers, changes) == (1, 3)  # backup takes over; main steps down and resyncs
    assert both_active == pytest.approx(0.2, abs=0.015)
    # Without damping the same model reproduces the ping-pong of the report (failback is left out:
    # the model does not carry handovers, and takeovers alone already ping-pong).
    off = Timing(timeout=0.3, startup_allowance=2.0, hold_down=2.0, handover_timeout=1.0, flap_window=0.0)
    takeovers, changes, both_active = simulate_flapping_link(off, failback_auto=False)
    assert takeovers == 30 and both_active > 5.0


# -- a stale start (issue 15 item 2): a node that was not in control when it stopped never takes control alone ----

STALE = "this node was standby in epoch 1 when it stopped, so it may lack what its partner did since"


def stale_machine(witness=False, epoch=1):
    return RoleMachine("backup", False, epoch, TIMING, True, witness, 0.0, stale_reason=STALE)


def test_a_stale_node_alone_waits_and_says_why_instead_of_taking_control():
    m = stale_machine()
    assert m.decide(Facts(now=1.9, peer=None)) is None  # the startup allowance first, as for any node
    decision = m.decide(Facts(now=2.0, peer=None))
    assert (decision.role, decision.epoch, decision.severity) == (Role.ISOLATED, 1, "error")
    assert STALE in decision.reason and "take-control" in decision.reason
    m.enter(decision, 2.0)
    assert m.decide(Facts(now=60.0, peer=None)) is None  # it keeps waiting, without repeating itself


def test_a_stale_node_that_hears_its_active_partner_syncs_and_is_stale_no_more():
    m = stale_machine()
    m.enter(m.decide(Facts(now=2.0, peer=None)), 2.0)
    m.enter(m.decide(Facts(now=3.0, peer=peer("active", epoch=1))), 3.0)
    assert m.role == Role.SYNCING and m.stale
    m.enter(m.decide(Facts(now=3.5, peer=peer("active", epoch=1), caught_up=True)), 3.5)
    assert m.role == Role.STANDBY and not m.stale
    decision = m.decide(Facts(now=9.0, peer=peer("active", epoch=1, silent_for=0.3)))
    assert decision.role == Role.ACTIVE  # now in sync: an ordinary failover


def test_an_operator_can_make_a_stale_node_take_control_and_that_is_alarm_level():
    m = stale_machine()
    m.enter(m.decide(Facts(now=2.0, peer=None)), 2.0)
    decision = m.decide(Facts(now=5.0, peer=None, take_control_requested=True))
    assert (decision.role, decision.epoch, decision.severity) == (Role.ACTIVE, 2, "error")
    assert "operator" in decision.reason and STALE in decision.reason


def test_a_witness_that_saw_the_partner_out_of_control_lets_a_stale_node_take_over():
    m = stale_machine(witness=True)
    waiting = m.decide(Facts(now=2.0, peer=None, witness=True, witness_current=None))
    assert waiting.role == Role.ISOLATED
    m.enter(waiting, 2.0)
    decision = m.decide(Facts(now=2.5, peer=None, witness=True, witness_current=True))
    assert decision.role == Role.ACTIVE and "latest state" in decision.reason


def test_between_two_starting_nodes_the_one_that_holds_the_latest_state_takes_control_whatever_the_preference():
    # The backup was active when both stopped, the main standby: the main (preferred) is stale.
    main = RoleMachine("main", True, 3, TIMING, True, False, 0.0, stale_reason=STALE)
    backup = machine("backup", False, epoch=3)
    main_view = PeerView("main", Role.STARTING, 3, True, False, 0.05, stale=True)
    backup_view = PeerView("backup", Role.STARTING, 3, False, False, 0.05, stale=False)
    assert main.decide(Facts(now=0.5, peer=backup_view)).role == Role.SYNCING
    taken = backup.decide(Facts(now=0.5, peer=main_view))
    assert taken.role == Role.ACTIVE and taken.epoch == 4


def test_the_witness_reason_says_whether_it_is_unreachable_or_still_hears_the_partner():
    m = machine(witness=True, role=Role.STANDBY, epoch=1)
    unreachable = m.decide(Facts(now=10.0, peer=peer("active", epoch=1, silent_for=0.4), witness=None))
    assert unreachable.role == Role.ISOLATED and "the witness is unreachable" in unreachable.reason
    hears = m.decide(Facts(now=10.0, peer=peer("active", epoch=1, silent_for=0.4), witness=False))
    assert hears.role == Role.ISOLATED and "the witness still hears it" in hears.reason
