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
