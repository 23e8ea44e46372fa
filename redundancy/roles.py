"""The role state machine of one node of the pair (DESIGN section 5), as pure decisions.

:meth:`RoleMachine.decide` looks at what this node knows (its role and
epoch, the partner's last heartbeat and how long it has been silent, the
witness's verdict) and returns the transition to make, with its reason, or
None. It performs nothing: the service persists the new epoch first, then
calls :meth:`RoleMachine.enter` and acts. Keeping the rules free of I/O is
what lets the tests walk through every scenario quickly and exactly.

Roles::

    starting -> syncing -> standby -> active -> handing_over -> standby
    isolated: the partner is silent but the witness does not confirm it is gone

Rules, in order:

* fencing: an active (or handing-over) node that hears an active partner
  with a higher epoch steps down at once (equal epochs: the preferred node,
  then the lower name, keeps control);
* failback / switchover: the active backup hands control to the preferred
  node once it reports that it has caught up and the hold-down has passed;
  an operator's switchover request does the same in either direction;
* takeover: a standby (or syncing, isolated) node takes control with epoch
  + 1 when the partner has been silent for the timeout and the witness, if
  one is configured, confirms; a node that has not yet settled (been standby
  or active since it started) first waits the startup allowance: a partner
  that is itself starting up on a loaded machine can be silent for longer
  than the timeout without being gone;
* no active node although both are up (cold start, or a restart within the
  timeout): the better-placed node takes control: a standby that is in sync
  before a node that is starting, then the preferred node, then the lower
  name. Both nodes rank alike, so exactly one of them acts.

Flap damping (ADR 0010): the service reports when the partner is heard again
after a link loss (every connection to it dropped, or a silence of at least
the timeout). Each loss within the flap window doubles the silence a node
demands before it takes control (capped); the demand decays back to the
timeout as losses age out of the window. A node that left control within the
hold-down demands one doubling more. Automatic failback waits until the link
has been steady for the hold-down and is not flapping.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    STARTING = "starting"
    SYNCING = "syncing"
    STANDBY = "standby"
    ACTIVE = "active"
    HANDING_OVER = "handing_over"
    ISOLATED = "isolated"


OWNS_FIELD = (Role.ACTIVE, Role.HANDING_OVER)
#: the damped takeover delay's default ceiling, in timeouts (BMS_FLAP_MAX_DELAY_MS overrides it)
DEFAULT_MAX_DELAY_FACTOR = 8
#: losses within the window from which the link counts as flapping (automatic failback waits)
FLAPPING_LOSSES = 2


@dataclass(frozen=True, slots=True)
class PeerView:
    """The partner as its last heartbeat described it, and how long ago anything was heard from it."""

    node: str
    role: Role
    epoch: int
    preferred: bool
    caught_up: bool
    silent_for: float
    stale: bool = False  # it started without being able to show it holds the latest state


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything a decision depends on, at one instant (``now`` on the monotonic clock)."""

    now: float
    peer: PeerView | None  # None: nothing heard from the partner since this node started
    witness: bool | None = None  # witness confirms the partner is gone; None: no verdict (or none configured)
    switchover_requested: bool = False
    caught_up: bool = False  # this node holds the active partner's image, configuration and history
    # the witness last heard the partner out of control or in a lower epoch: this node holds the latest state
    witness_current: bool | None = None
    take_control_requested: bool = False  # an operator's explicit, audited "take control although stale"


@dataclass(frozen=True, slots=True)
class Decision:
    """A transition to make: the new role and epoch, why, and how loud the record of it is."""

    role: Role
    epoch: int
    reason: str
    severity: str = ""  # "" : the service's default for the change; "error": an alarm-level change


@dataclass(slots=True)
class Timing:
    """The configured times, in seconds; ``flap_window`` 0 turns flap damping off."""

    timeout: float
    startup_allowance: float
    hold_down: float
    handover_timeout: float
    flap_window: float = 60.0
    max_takeover_delay: float | None = None  # None: DEFAULT_MAX_DELAY_FACTOR x timeout

    @property
    def takeover_delay_cap(self) -> float:
        cap = self.max_takeover_delay
        if cap is None:
            cap = DEFAULT_MAX_DELAY_FACTOR * self.timeout
        return max(cap, self.timeout)


class FlapDamper:
    """Remembers the link losses of the last ``window`` seconds (pure: the caller passes the time).

    A loss is recorded when the partner is heard again, so an outage in
    progress never counts towards the delay that ends it: the first failure
    after a quiet window is taken over after the plain timeout.
    """

    def __init__(self, timeout: float, window: float) -> None:
        self.timeout = timeout
        self.window = window
        self.losses: deque[float] = deque()
        self._dropped = False

    def link_dropped(self) -> None:
        self._dropped = True

    def heard_again(self, now: float, silent_for: float) -> bool:
        """The partner is heard after ``silent_for`` seconds; True if that ends a link loss (now recorded)."""
        lost = self._dropped or silent_for >= self.timeout
        self._dropped = False
        if lost and self.window > 0:
            self.losses.append(now)
        return lost

    def recent(self, now: float) -> int:
        """Losses within the window before ``now``."""
        while self.losses and now - self.losses[0] >= self.window:
            self.losses.popleft()
        return len(self.losses)

    @property
    def last_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None


class RoleMachine:
    """Role and epoch of this node; ``decide`` proposes, ``enter`` commits (after the epoch is persisted)."""

    def __init__(
        self,
        node: str,
        preferred: bool,
        epoch: int,
        timing: Timing,
        failback_auto: bool,
        witness_configured: bool,
        now: float,
        stale_reason: str = "",
    ) -> None:
        self.node = node
        # Non-empty: this node cannot show it holds the latest state (it was not in control when it
        # stopped), so it never takes control alone at start-up (corosync's wait_for_all).
        self.stale_reason = stale_reason
        self.preferred = preferred
        self.epoch = epoch
        self.timing = timing
        self.failback_auto = failback_auto
        self.witness_configured = witness_configured
        self.role = Role.STARTING
        self.started_at = now
        self.entered_at = now
        self.settled = False  # been standby or in control since start-up
        self.left_control_at: float | None = None  # last step-down or completed handover
        self.damper = FlapDamper(timing.timeout, timing.flap_window)

    def enter(self, decision: Decision, now: float) -> None:
        if self.role in OWNS_FIELD and decision.role not in OWNS_FIELD:
            self.left_control_at = now
        self.role = decision.role
        self.epoch = decision.epoch
        self.entered_at = now
        self.settled = self.settled or decision.role == Role.STANDBY or decision.role in OWNS_FIELD

    # -- observations of the link (flap damping) -------------------------------------------------------------------

    def link_dropped(self) -> None:
        """Every connection to the partner closed (the outage is recorded when the partner is heard again)."""
        if self.settled:
            self.damper.link_dropped()

    def partner_heard(self, now: float, silent_for: float) -> bool:
        """The partner is heard again after ``silent_for`` seconds; True if a link loss was recorded.

        Losses count only once this node has settled: until then the startup
        allowance, not the damper, governs how long a silence is tolerated.
        """
        return self.settled and self.damper.heard_again(now, silent_for)

    def link_losses(self, now: float) -> int:
        return self.damper.recent(now) if self.timing.flap_window > 0 else 0

    def takeover_delay(self, now: float) -> float:
        """How long the partner must be silent before this node takes control (the damped timeout)."""
        timing = self.timing
        if timing.flap_window <= 0:
            return timing.timeout
        doublings = self.link_losses(now)
        if self.left_control_at is not None and now - self.left_control_at < timing.hold_down:
            # It just gave control away (higher epoch, or a handover): taking it straight
            # back is how a flapping link turns into ping-pong.
            doublings += 1
        return min(timing.timeout * 2 ** min(doublings, 32), timing.takeover_delay_cap)

    def flapping(self, now: float) -> bool:
        return self.link_losses(now) >= FLAPPING_LOSSES

    def link_steady(self, now: float) -> bool:
        """No loss for the hold-down and not flapping: an automatic failback may start."""
        if self.timing.flap_window <= 0:
            return True
        last = self.damper.last_loss
        recent_loss = last is not None and now - last < self.timing.hold_down
        return not recent_loss and not self.flapping(now)

    def observe_epoch(self, epoch: int) -> bool:
        """Adopt a higher epoch seen on the partner while not in control; True if it moved."""
        if epoch > self.epoch and self.role not in OWNS_FIELD:
            self.epoch = epoch
            return True
        return False

    def decide(self, facts: Facts) -> Decision | None:
        peer = facts.peer
        alive = peer is not None and peer.silent_for < self.timing.timeout
        if self.role in OWNS_FIELD:
            return self._decide_in_control(facts, peer if alive else None)
        if alive and peer.role in OWNS_FIELD:
            if self.role in (Role.STARTING, Role.ISOLATED):
                return Decision(
                    Role.SYNCING,
                    max(self.epoch, peer.epoch),
                    f"partner {peer.node} is {peer.role} in epoch {peer.epoch}; receiving its state",
                )
            if self.role == Role.SYNCING and facts.caught_up:
                return Decision(Role.STANDBY, max(self.epoch, peer.epoch), f"caught up with {peer.node}")
            return None
        if alive:
            return self._decide_nobody_active(peer)
        return self._decide_partner_silent(facts, peer)

    # -- in control ------------------------------------------------------------------------------------------------

    def _decide_in_control(self, facts: Facts, peer: PeerView | None) -> Decision | None:
        now = facts.now
        if peer is not None and peer.role == Role.ACTIVE and self._peer_outranks_in_control(peer):
            if self.role == Role.HANDING_OVER:
                return Decision(
                    Role.STANDBY, peer.epoch, f"handover complete: {peer.node} is active in epoch {peer.epoch}"
                )
            return Decision(
                Role.SYNCING,
                peer.epoch,
                f"partner {peer.node} is active in epoch {peer.epoch} (this node: {self.epoch}); stepping down",
            )
        if self.role == Role.HANDING_OVER:
            if now - self.entered_at < self.timing.handover_timeout:
                return None
            silent = facts.peer
            if peer is None and silent is not None and silent.silent_for < self.takeover_delay(now):
                # The partner may have taken the handover before it fell silent:
                # resuming control is a takeover and waits like one.
                return None
            if peer is None and not self._witness_allows(facts):
                return Decision(Role.ISOLATED, self.epoch, "handover not confirmed and the witness does not agree")
            return Decision(
                Role.ACTIVE,
                max(self.epoch, peer.epoch if peer else 0) + 1,
                "the partner did not take control within the handover timeout; resuming control",
            )
        ready = peer is not None and peer.role == Role.STANDBY and peer.caught_up
        if ready and facts.switchover_requested:
            return Decision(Role.HANDING_OVER, self.epoch, f"switchover requested; handing control to {peer.node}")
        if (
            ready
            and self.failback_auto
            and peer.preferred
            and not self.preferred
            and now - self.entered_at >= self.timing.hold_down
            and self.link_steady(now)
        ):
            return Decision(Role.HANDING_OVER, self.epoch, f"failback: preferred node {peer.node} has caught up")
        return None

    def _peer_outranks_in_control(self, peer: PeerView) -> bool:
        if peer.epoch != self.epoch:
            return peer.epoch > self.epoch
        return _rank(peer.preferred, peer.node) < _rank(self.preferred, self.node)

    # -- nobody in control -----------------------------------------------------------------------------------------

    @property
    def stale(self) -> bool:
        """Started without being able to show it holds the latest state, and not in sync since."""
        return bool(self.stale_reason) and not self.settled

    def _decide_nobody_active(self, peer: PeerView) -> Decision | None:
        # A node that may lack the other's latest state ranks after one that holds it, whatever its preference.
        mine = (int(self.stale), *_placement(self.role), *_rank(self.preferred, self.node))
        theirs = (int(peer.stale), *_placement(peer.role), *_rank(peer.preferred, peer.node))
        if mine < theirs:
            return Decision(
                Role.ACTIVE,
                max(self.epoch, peer.epoch) + 1,
                f"no node is active (partner {peer.node} is {peer.role}); this node takes control",
            )
        if self.role in (Role.STARTING, Role.ISOLATED):
            return Decision(
                Role.SYNCING, max(self.epoch, peer.epoch), f"partner {peer.node} is better placed to take control"
            )
        return None

    def _decide_partner_silent(self, facts: Facts, peer: PeerView | None) -> Decision | None:
        now = facts.now
        if not self.settled and now - self.started_at < self.timing.startup_allowance:
            return None
        delay = self.takeover_delay(now)
        if peer is not None and peer.silent_for < delay:
            return None
        if peer is None:
            what = f"partner not heard within the startup allowance of {self.timing.startup_allowance:.1f} s"
        else:
            silent_ms, timeout_ms = peer.silent_for * 1000, self.timing.timeout * 1000
            what = f"partner {peer.node} silent for {silent_ms:.0f} ms (timeout {timeout_ms:.0f} ms"
            if delay > self.timing.timeout:
                what += f", damped to {delay * 1000:.0f} ms: {self._damping_cause(now)}"
            what += ")"
        epoch = max(self.epoch, peer.epoch if peer else 0) + 1
        if self.stale:
            if facts.take_control_requested:
                return Decision(
                    Role.ACTIVE,
                    epoch,
                    f"{what}; an operator made this node take control although {self.stale_reason}",
                    severity="error",
                )
            if facts.witness_current is not True:
                if self.role == Role.ISOLATED:
                    return None
                partner = peer.node if peer else "the partner"
                return Decision(
                    Role.ISOLATED,
                    self.epoch,
                    f"{what}; not taking control alone: {self.stale_reason}. Waiting for {partner}, for a witness "
                    "that confirms this node holds the latest state, or for an operator "
                    "(python manage.py redundancy take-control)",
                    severity="error",
                )
            what += "; the witness confirms this node holds the latest state"
        if not self._witness_allows(facts):
            if self.role == Role.ISOLATED:
                return None
            why = "the witness still hears it" if facts.witness is False else "the witness is unreachable"
            return Decision(Role.ISOLATED, self.epoch, f"{what}, but {why}: not taking control")
        suffix = "; the witness confirms" if self.witness_configured else ""
        return Decision(Role.ACTIVE, epoch, f"{what}{suffix}; taking control")

    def _damping_cause(self, now: float) -> str:
        causes = []
        losses = self.link_losses(now)
        if losses:
            causes.append(f"{losses} link loss{'es' if losses > 1 else ''} within {self.timing.flap_window:.0f} s")
        if self.left_control_at is not None and now - self.left_control_at < self.timing.hold_down:
            causes.append("left control within the hold-down")
        return ", ".join(causes)

    def _witness_allows(self, facts: Facts) -> bool:
        return not self.witness_configured or facts.witness is True


def _rank(preferred: bool, node: str) -> tuple[int, str]:
    return (0 if preferred else 1, node)


def _placement(role: Role) -> tuple[int]:
    # A standby holds the replicated state; a starting or syncing node may not.
    return (0 if role == Role.STANDBY else 1,)
