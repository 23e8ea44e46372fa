"""The pair service: one node's side of the hot-standby pair, running as tasks on the engine's loop.

It owns the sync link (:mod:`redundancy.link`), the role state machine
(:mod:`redundancy.roles`) and the replication streams
(:mod:`redundancy.replication`), and hands the engine its role through
:class:`PairRole`. The engine never imports this module; the composition
root (``bms.node``) builds both and connects them.

Order of effects on every role change: the new epoch is persisted (node
state row and the history stamp counter) before the node acts on it; a node
leaving control stops its field I/O after the role gate already refuses
writes; every change is written to the event log (which replicates, so both
nodes show both nodes' changes) and pushed to websocket clients.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bms.engine import bus
from bms.engine.dbhealth import DatabaseUnavailable
from bms.engine.loopwatch import PeriodJitter
from bms.engine.role import RoleGate
from bms.engine.tasks import cancel_and_wait
from redundancy import state
from redundancy.clock import ClockOffset
from redundancy.config import PairConfig
from redundancy.link import Connection, LinkDialer, LinkServer, RejectLog
from redundancy.models import NodeState
from redundancy.replication import Replicator
from redundancy.roles import OWNS_FIELD, Decision, Facts, PeerView, Role, RoleMachine, Timing

if TYPE_CHECKING:
    from bms.control.models import Command
    from bms.engine.runner import Engine

log = logging.getLogger(__name__)
STATUS_INTERVAL = 0.5
ROLE_HISTORY = 20
SWITCHOVER_VALID_SECONDS = 30.0


class PairRole(RoleGate):
    """The engine's role gate, backed by the role machine: active only in role ``active``.

    Writes also need the pair service's word that this node is not in doubt
    (see :meth:`PairService.write_allowed`): a node frozen for longer than
    the timeout may have been replaced meanwhile, and must not send a write
    before it has read what its partner said while it was gone.
    """

    def __init__(self) -> None:
        self.machine: RoleMachine | None = None
        self.write_allowed: Callable[[], bool] = lambda: True

    def may_write(self, epoch: int) -> bool:
        return super().may_write(epoch) and self.write_allowed()

    @property
    def active(self) -> bool:
        return self.machine is not None and self.machine.role == Role.ACTIVE

    @property
    def epoch(self) -> int:
        return self.machine.epoch if self.machine is not None else 0


class PartnerInfo:
    """What the partner's heartbeats told us, and when we last heard anything from it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.heartbeat: dict[str, Any] | None = None
        self.last_heard: float | None = None

    def view(self, now: float) -> PeerView | None:
        if self.heartbeat is None or self.last_heard is None:
            return None
        hb = self.heartbeat
        return PeerView(
            node=self.name,
            role=Role(hb["role"]),
            epoch=int(hb["e"]),
            preferred=bool(hb.get("preferred")),
            caught_up=bool(hb.get("caught_up")),
            silent_for=now - self.last_heard,
            stale=bool(hb.get("stale")),
        )


class PairService:
    """Runs the link, decides roles, moves control in and out of the engine, replicates state."""

    def __init__(self, config: PairConfig) -> None:
        self.config = config
        self.role = PairRole()
        self.partner = PartnerInfo(config.partner)
        self.rejects = RejectLog()
        self.engine: Engine | None = None
        self.replicator: Replicator | None = None
        self.machine: RoleMachine | None = None
        self.role_changes: deque[dict[str, Any]] = deque(maxlen=ROLE_HISTORY)
        self.takeovers = 0
        self.witness_view: dict[str, Any] | None = None
        self.witness_heard: float | None = None
        self._switchover_at: float | None = None
        self.clock = ClockOffset()
        self.clock_skewed = False
        self._witness_reachable: bool | None = None
        self._take_control_at: float | None = None
        self._acting = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self._last_heartbeat = 0.0
        self._published: NodeState | None = None  # see memory_row
        self._last_tick = time.monotonic()
        self._doubt_until = 0.0
        self._heard_in_doubt = False
        self.server: LinkServer | None = None
        self.dialer: LinkDialer | None = None
        self.witness: LinkDialer | None = None
        self.incoming: set[Connection] = set()
        # |interval - period| between consecutive heartbeats, over the last minute (status and /metrics).
        self.heartbeats_sent = PeriodJitter(config.period)
        self.heartbeats_received = PeriodJitter(config.period)

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        self.role.write_allowed = self.write_allowed
        self.replicator = Replicator(self, engine)
        engine.commands.barrier = self.command_barrier

    async def start(self) -> None:
        assert self.engine is not None, "attach() the engine first"
        cfg = self.config
        epoch = await self.engine.run_in_db(state.load_epoch)
        stale_reason = stale_start_reason(await self.engine.run_in_db(state.load_last_role), epoch)
        now = time.monotonic()
        timing = Timing(
            cfg.timeout,
            cfg.startup_allowance,
            cfg.hold_down,
            cfg.handover_timeout,
            flap_window=cfg.flap_window,
            max_takeover_delay=cfg.max_takeover_delay,
        )
        self.machine = RoleMachine(
            cfg.node, cfg.preferred, epoch, timing, cfg.failback_auto, cfg.witness_configured, now, stale_reason
        )
        self.role.machine = self.machine
        # Both ends of the partner link: same identity, handlers and reject counters.
        partner_link = (cfg.node, cfg.secret, _only(cfg.partner), self._on_message, self._on_connection, self.rejects)
        self.server = LinkServer(cfg.sync_host, cfg.sync_port, *partner_link)
        await self.server.start()
        self.dialer = LinkDialer(cfg.partner_host, cfg.partner_port, cfg.period, *partner_link)
        self.dialer.start()
        if cfg.witness_configured:
            self.witness = LinkDialer(
                cfg.witness_host,
                cfg.witness_port,
                cfg.period,
                cfg.node,
                cfg.secret,
                _only("witness"),
                self._on_witness_message,
                None,
                self.rejects,
            )
            self.witness.start()
        started = f"node started in epoch {epoch}; waiting for partner {cfg.partner}"
        if stale_reason:
            started += f" (it will not take control alone: {stale_reason})"
        await self._record("start", started)
        self._tasks = [
            asyncio.create_task(self._pulse_loop(), name="pair-heartbeat"),
            asyncio.create_task(self._tick_loop(), name="pair-roles"),
            asyncio.create_task(self._status_loop(), name="pair-status"),
            *self.replicator.tasks(),
        ]
        log.info(
            "pair service started: node %s, sync port %d, partner %s at %s:%d, period %.0f ms, timeout %.0f ms",
            cfg.node,
            self.server.port,
            cfg.partner,
            cfg.partner_host,
            cfg.partner_port,
            cfg.period * 1000,
            cfg.timeout * 1000,
        )

    async def stop(self) -> None:
        await asyncio.gather(*(cancel_and_wait(task) for task in self._tasks))
        for endpoint in (self.dialer, self.witness, self.server):
            if endpoint is not None:
                await endpoint.stop()

    # -- link ------------------------------------------------------------------------------------------------------

    def connection(self) -> Connection | None:
        """The connection to send on: our own outgoing one if it is up, else one the partner opened."""
        if self.dialer is not None and self.dialer.connection is not None and self.dialer.connection.open:
            return self.dialer.connection
        return next((c for c in self.incoming if c.open), None)

    @property
    def connected(self) -> bool:
        return self.connection() is not None

    def envelope(self, kind: str, **body: Any) -> dict[str, Any]:
        """Every message carries the sender's ``(epoch, seq)``."""
        return {"t": kind, "e": self.machine.epoch, "s": self.engine.image.seq, "node": self.config.node, **body}

    async def send(self, kind: str, **body: Any) -> bool:
        connection = self.connection()
        if connection is None:
            return False
        try:
            await connection.send(self.envelope(kind, **body))
        except (ConnectionError, OSError):
            connection.close()
            return False
        return True

    def _on_connection(self, connection: Connection, up: bool) -> None:
        if not connection.outgoing:
            (self.incoming.add if up else self.incoming.discard)(connection)
        if up:
            log.info(
                "sync link: %s connection with %s (%s) up",
                "outgoing" if connection.outgoing else "incoming",
                connection.peer,
                connection.address,
            )
            self.replicator.link_up()
            # Heard at once rather than up to a period later: after a short cut the
            # partner's silence ends as soon as the link is back.
            self._last_heartbeat = 0.0
            self._restart_jitter()  # that early heartbeat and the gap before it are not jitter
        else:
            log.info("sync link: connection with %s (%s) closed", connection.peer, connection.address)
            if not self.connected:
                self._restart_jitter()
                self.replicator.link_down()
                if self.machine is not None:
                    self.machine.link_dropped()

    async def _on_message(self, connection: Connection, body: dict[str, Any]) -> None:
        now = time.monotonic()
        if self.partner.last_heard is not None and self.machine is not None:
            self._note_heard_again(now, now - self.partner.last_heard)
        self.partner.last_heard = now
        kind = body["t"]
        if kind == "hb":
            self._on_heartbeat(body)
        elif kind == "handover":
            await self._on_handover(body)
        else:
            await self.replicator.on_message(body)

    def _restart_jitter(self) -> None:
        self.heartbeats_sent.restart()
        self.heartbeats_received.restart()

    def _note_heard_again(self, now: float, silent_for: float) -> None:
        if self.machine.partner_heard(now, silent_for):
            log.warning(
                "sync link: partner %s back after %.0f ms: link loss %d within %.0f s; takeover delay now %.0f ms",
                self.config.partner,
                silent_for * 1000,
                self.machine.link_losses(now),
                self.config.flap_window,
                self.machine.takeover_delay(now) * 1000,
            )

    def _on_heartbeat(self, body: dict[str, Any]) -> None:
        try:
            Role(body["role"])
            int(body["e"])
        except (KeyError, ValueError, TypeError):
            log.warning("sync link: malformed heartbeat from %s ignored", self.config.partner)
            return
        self.partner.heartbeat = body
        self.heartbeats_received.event(time.monotonic())
        self.clock.heard(body, datetime.now(UTC))
        self._heard_in_doubt = self._doubt_until > 0
        if self.machine.observe_epoch(int(body["e"])):
            self._persist_soon()
        if body.get("switchover") and self.machine.role == Role.ACTIVE:
            self.request_switchover()

    def _watch_witness(self, now: float) -> None:
        """Record the loss and the return of the witness as events (it decides whether a takeover may happen)."""
        if not self.config.witness_configured:
            return
        reachable = self.witness_heard is not None and now - self.witness_heard <= self.config.timeout
        if reachable == self._witness_reachable:
            return
        if (
            self._witness_reachable is None
            and not reachable
            and now - self.machine.started_at < self.config.startup_allowance
        ):
            return  # not reached yet at start-up: give it the allowance before saying so
        was, self._witness_reachable = self._witness_reachable, reachable
        where = f"{self.config.witness_host}:{self.config.witness_port}"
        if reachable:
            if was is False:
                self._note("witness_reachable", f"witness at {where} reachable again", "info")
            return
        if self.witness_heard is None:
            why = f"never reached ({(self.witness.last_error if self.witness else '') or 'no answer'})"
        else:
            why = f"silent for {(now - self.witness_heard) * 1000:.0f} ms"
            if self.witness is not None and self.witness.last_error:
                why += f" ({self.witness.last_error})"
        self._note(
            "witness_unreachable",
            f"witness at {where} unreachable: {why}; while it is, a standby of this pair does not take control",
            "warning",
        )

    def _watch_clock(self) -> None:
        """Warn once when the partner's clock is off by more than the threshold, and once when it is back."""
        offset = self.clock.offset
        if offset is None:
            return
        limit = self.config.clock_skew_warn
        if not self.clock_skewed and abs(offset) > limit:
            self.clock_skewed = True
            self._note(
                "clock_skew",
                f"the clock of {self.config.partner} is {offset * 1000:+.0f} ms off this node's (warning above "
                f"{limit * 1000:.0f} ms): events and commands of both nodes sort in the wrong order; check NTP",
                "warning",
            )
        elif self.clock_skewed and abs(offset) < limit / 2:
            self.clock_skewed = False
            self._note(
                "clock_skew", f"the clock of {self.config.partner} agrees again ({offset * 1000:+.0f} ms)", "info"
            )

    def _note(self, kind: str, message: str, severity: str, when: datetime | None = None) -> None:
        """Log it and record it in the event log (through the engine's outbox: also while the database is away)."""
        level = {"error": logging.ERROR, "warning": logging.WARNING}.get(severity, logging.INFO)
        log.log(level, "redundancy: %s", message)
        self.engine.events.record(kind, self.config.node, message, severity, when or datetime.now(UTC))

    async def _on_witness_message(self, connection: Connection, body: dict[str, Any]) -> None:
        if body.get("t") == "witness":
            self.witness_view = body.get("nodes") or {}
            self.witness_heard = time.monotonic()

    # -- roles -----------------------------------------------------------------------------------------------------

    def witness_verdict(self, now: float) -> bool | None:
        """True if the witness is reachable, current, and has not heard the partner for the timeout either."""
        if not self.config.witness_configured or self.witness_heard is None:
            return None
        if now - self.witness_heard > self.config.timeout:
            return None
        partner = (self.witness_view or {}).get(self.config.partner)
        return partner is None or float(partner.get("age", 1e9)) >= self.config.timeout

    def witness_says_current(self, now: float) -> bool | None:
        """True if the witness last heard the partner out of control or in a lower epoch than this node's.

        Then nothing happened on the partner that this node lacks: it may take
        control after a stale start. None: no current word from the witness
        (or it never heard the partner since it started: it cannot vouch).
        """
        if not self.config.witness_configured or self.witness_heard is None:
            return None
        if now - self.witness_heard > self.config.timeout:
            return None
        partner = (self.witness_view or {}).get(self.config.partner)
        if partner is None:
            return None
        try:
            partner_role, partner_epoch = Role(partner.get("role")), int(partner.get("epoch") or 0)
        except (ValueError, TypeError):
            return None
        return partner_epoch < self.machine.epoch or partner_role not in OWNS_FIELD

    def facts(self, now: float) -> Facts:
        return Facts(
            now=now,
            peer=self.partner.view(now),
            witness=self.witness_verdict(now),
            switchover_requested=self.switchover_requested,
            caught_up=self.replicator.caught_up,
            witness_current=self.witness_says_current(now),
            take_control_requested=self.take_control_requested,
        )

    def write_allowed(self) -> bool:
        """False while this node cannot vouch that it still holds control.

        The heartbeat task runs every few tens of milliseconds; if it has not run
        for half the timeout, or ran after a stall longer than the timeout
        (SIGSTOP, a frozen VM, swap), the partner may have taken over in the
        meantime. Writes wait until the partner has been heard again (a
        higher epoch then makes this node step down) or, if the partner is
        really gone, for one more timeout.
        """
        now = time.monotonic()
        return now - self._last_tick < self.config.timeout / 2 and now >= self._doubt_until

    def _note_tick(self, now: float) -> None:
        stalled = now - self._last_tick
        if stalled > self.config.timeout and self.machine.role in OWNS_FIELD:
            self._doubt_until = now + self.config.timeout
            log.warning(
                "this node's loop stalled for %.0f ms (timeout %.0f ms); device writes held until the partner is heard",
                stalled * 1000,
                self.config.timeout * 1000,
            )
        self._last_tick = now

    async def _pulse_loop(self) -> None:
        """Heartbeats and the stall watch, on their own task.

        A role change can take a while (the takeover loads the configuration
        and settles commands through the database); the partner must keep
        hearing this node meanwhile, or it would take control too and the
        pair would briefly hold two active nodes in the same epoch.
        """
        tick = min(self.config.period / 4, 0.05)
        while True:
            now = time.monotonic()
            self._note_tick(now)
            if now - self._last_heartbeat >= self.config.period:
                self._last_heartbeat = now
                try:
                    self._send_heartbeat()
                except Exception:
                    log.exception("sending the heartbeat failed; continuing")
            await asyncio.sleep(tick)

    async def _tick_loop(self) -> None:
        tick = min(self.config.period / 4, 0.05)
        while True:
            now = time.monotonic()
            try:
                heard_in_doubt = self._heard_in_doubt
                decision = self.machine.decide(self.facts(now))
                if decision is not None:
                    await self.act(decision)
                if heard_in_doubt:
                    # The partner's view was known when this decision was made.
                    self._doubt_until = self._heard_in_doubt = 0.0
                await self.replicator.tick()
                self._watch_witness(now)
                self._watch_clock()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:
                pass  # logged once per outage by the engine's database health
            except Exception:
                log.exception("pair service tick failed; continuing")
            await asyncio.sleep(tick)

    def _send_heartbeat(self) -> None:
        hb = self.envelope(
            "hb",
            role=str(self.machine.role),
            preferred=self.config.preferred,
            caught_up=self.replicator.caught_up,
            stale=self.machine.stale,
            url=self.config.public_url,
            config_hash=self.replicator.config_hash,
            backlog=self.replicator.backlog,
            history_current=self.replicator.history_current,
            # An operator asked the standby for a switchover: the active node carries it out.
            switchover=self.switchover_requested and self.machine.role != Role.ACTIVE,
            time=datetime.now(UTC),
            **self.clock.echo(),
        )
        connection = self.connection()
        if connection is None:
            self.heartbeats_sent.restart()
        else:
            try:
                connection.send_nowait(hb)
            except (ConnectionError, OSError):
                self.heartbeats_sent.restart()
                connection.close()
            else:
                self.heartbeats_sent.event(time.monotonic())
        witness = self.witness.connection if self.witness is not None else None
        if witness is not None and witness.open:
            try:
                witness.send_nowait(hb)
            except (ConnectionError, OSError):
                witness.close()

    async def act(self, decision: Decision, handover: bool = False) -> None:
        """Carry out one transition: persist the epoch, switch the gate, move field I/O, record it.

        ``handover``: control is handed to us by the partner (not a failover).
        """
        async with self._acting:
            old = self.machine.role
            if decision.epoch != self.machine.epoch:
                await self.engine.run_in_db(state.save_epoch, decision.epoch)
            self.machine.enter(decision, time.monotonic())
            if old == Role.ACTIVE:
                # Say so before anything else happens: whoever reads the node
                # state rows (pages, load balancers, tests) must never see this
                # node still active once its partner may already be.
                await self.write_status()
            if decision.role in OWNS_FIELD or old in OWNS_FIELD:
                self._switchover_at = None
            if decision.role == Role.ACTIVE:
                if old in (Role.STANDBY, Role.SYNCING, Role.ISOLATED) and not handover:
                    self.takeovers += 1  # a failover: not a cold start, a handover or a resumed handover
                self.replicator.became_active()
                await self.engine.take_control()
            elif old == Role.ACTIVE:
                # The gate already refuses writes (role is no longer active).
                await self.engine.release_control()
                if decision.role == Role.HANDING_OVER:
                    await self.replicator.hand_over()
                else:
                    self.replicator.became_passive()
            elif decision.role in (Role.SYNCING, Role.STANDBY) and old == Role.HANDING_OVER:
                self.replicator.became_passive()
            await self._record(
                "role_change",
                f"{old} -> {decision.role} (epoch {decision.epoch}): {decision.reason}",
                old=old,
                severity=decision.severity,
            )
            await self.write_status()

    async def _on_handover(self, body: dict[str, Any]) -> None:
        """The active partner hands control to us: take it if our image is exactly its final one."""
        epoch, seq = int(body.get("epoch", 0)), int(body.get("final_seq", -1))
        if self.machine.role != Role.STANDBY or epoch <= self.machine.epoch:
            log.warning(
                "handover from %s refused: this node is %s in epoch %d",
                body.get("node"),
                self.machine.role,
                self.machine.epoch,
            )
            return
        if seq != self.engine.image.seq:
            log.warning("handover refused: final seq %d but this node's image is at %d", seq, self.engine.image.seq)
            return
        await self.act(Decision(Role.ACTIVE, epoch, f"handover from {body.get('node')}"), handover=True)

    @property
    def switchover_requested(self) -> bool:
        """An operator's request, valid for a while: it is not carried out later by surprise."""
        return self._switchover_at is not None and time.monotonic() - self._switchover_at < SWITCHOVER_VALID_SECONDS

    def request_switchover(self) -> None:
        self._switchover_at = time.monotonic()

    @property
    def take_control_requested(self) -> bool:
        """An operator's "take control although stale", valid for a while like a switchover request."""
        return self._take_control_at is not None and time.monotonic() - self._take_control_at < SWITCHOVER_VALID_SECONDS

    async def command_barrier(self, command: Command) -> bool:
        return await self.replicator.command_barrier(command)

    # -- records and status ----------------------------------------------------------------------------------------

    async def _record(self, kind: str, message: str, old: Role | None = None, severity: str = "") -> None:
        when = datetime.now(UTC)
        entry = {
            "time": when.isoformat(),
            "role": str(self.machine.role),
            "epoch": self.machine.epoch,
            "reason": message,
        }
        self.role_changes.appendleft(entry)
        self._note(
            kind, message, severity or ("warning" if kind == "role_change" and old in OWNS_FIELD else "info"), when
        )
        await self._publish_role()

    async def _publish_role(self) -> None:
        try:
            await self.engine.layer.group_send(bus.LIVE_GROUP, {"type": bus.LIVE_ROLE, **self.client_view()})
        except Exception as exc:  # clients also poll /healthz; a lost role message is not fatal
            log.warning("could not publish the role change to clients: %s", exc)

    def active_node(self) -> tuple[str, str]:
        """Name and web address of the node this node believes is active ('' if none)."""
        if self.machine.role == Role.ACTIVE:
            return self.config.node, self.config.public_url
        peer = self.partner.view(time.monotonic())
        if peer is not None and peer.silent_for < self.config.timeout and peer.role in OWNS_FIELD:
            return peer.node, (self.partner.heartbeat or {}).get("url") or self.config.partner_url
        return "", ""

    def client_view(self) -> dict[str, Any]:
        name, url = self.active_node()
        return {
            "node": self.config.node,
            "role": str(self.machine.role),
            "epoch": self.machine.epoch,
            "active_node": name,
            "active_url": url,
            "partner_url": (self.partner.heartbeat or {}).get("url") or self.config.partner_url,
        }

    def status(self) -> dict[str, Any]:
        from redundancy.status import build_status

        return build_status(self, time.monotonic())

    def memory_row(self) -> NodeState | None:
        """This node's state row as the status loop last published it in memory (None before its first slot).

        The web side of the same process reads it instead of the database row
        (ADR 0013): the slots that write the row publish it, so it ages like
        the row when this node's loop is stuck or the node is in doubt after a
        stall, but a busy or absent database cannot make it look stale (its
        slots never wait for a write), and reading it costs no query. Built on
        the engine's loop, so the web thread never walks the pair service's
        state while it changes.
        """
        return self._published

    def _publish(self, full: bool) -> None:
        """Publish this node's state in memory: the whole status, or (``full`` False) a liveness beat."""
        name, url = self.active_node()
        previous = self._published
        status = self.status() if full or previous is None else previous.status
        self._published = NodeState(
            node=self.config.node,
            role=str(self.machine.role),
            epoch=self.machine.epoch,
            active_node=name,
            active_url=url,
            status=status,
            updated_at=datetime.now(UTC),
        )

    async def write_status(self) -> None:
        name, url = self.active_node()
        await self.engine.run_in_status_db(
            state.save_status, str(self.machine.role), self.machine.epoch, name, url, self.status()
        )

    @property
    def beat_interval(self) -> float:
        """How often the engine shows the web side it is alive: well within the timeout the web side allows."""
        return min(self.config.period, self.config.timeout / 3, STATUS_INTERVAL)

    async def _status_loop(self) -> None:
        """The node state: published in memory every slot, and written to the row beside the loop.

        The row gets the whole status every STATUS_INTERVAL and a liveness beat
        in the slots between.

        Publishing never waits for the database: a database that hangs or is
        away (the pool waits ``BMS_DB_POOL_TIMEOUT`` for a connection, far
        longer than the heartbeat timeout) must not make this live node look
        stale to the web side of its process. The row's writes run one at a
        time beside the loop, so a slot that comes while the previous write is
        still running (a slow database) skips its write, never queues it;
        a whole status owed meanwhile goes with the next write.
        """
        interval = self.beat_interval
        origin = time.monotonic()
        next_status = origin + STATUS_INTERVAL
        # A whole status the row has not had yet (its slot came while a write was running). The first write is
        # one: the row may still hold this node's role from its last life, which a beat would make look current.
        full_owed = True
        writing: asyncio.Task[None] | None = None
        try:
            while True:
                await asyncio.sleep(interval - (time.monotonic() - origin) % interval)
                if self.machine.role in OWNS_FIELD and not self.write_allowed():
                    # After a stall this node may have been replaced: the row and the published
                    # state age (the web side says "unknown") until the role loop has heard the partner.
                    continue
                now = time.monotonic()
                full = now >= next_status
                if full:
                    # Half a slot of slack: slots wake a little late or early, and the full
                    # status must not slip to every other one.
                    next_status = now + STATUS_INTERVAL - interval / 2
                self._publish(full=full)
                full_owed = full_owed or full
                if writing is None or writing.done():
                    writing = asyncio.create_task(self._write_row(full_owed), name="pair-status-write")
                    full_owed = False
        finally:
            await cancel_and_wait(writing)

    async def _write_row(self, full: bool) -> None:
        """One slot's write of the node state row: the whole status (and the operators' requests), or a beat."""
        try:
            if full:
                await self.write_status()
                requests = await self.engine.run_in_status_db(state.take_operator_requests)
                if "switchover_requested_at" in requests:
                    log.info("switchover requested by an operator")
                    self.request_switchover()
                if "take_control_requested_at" in requests:
                    log.warning("an operator asked this node to take control although its state may be stale")
                    self._take_control_at = time.monotonic()
            else:
                await self.engine.run_in_status_db(state.beat)
        except DatabaseUnavailable:
            pass  # logged once per outage by the engine's database health
        except Exception:
            log.exception("writing the redundancy status failed")

    def _persist_soon(self) -> None:
        task = asyncio.ensure_future(self.engine.run_in_db(state.save_epoch, self.machine.epoch))
        task.add_done_callback(_report_failure)


def _report_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("persisting the adopted epoch failed: %s", task.exception())


def _only(name: str) -> Callable[[str], bool]:
    return lambda node: node == name


def stale_start_reason(last_role: str | None, epoch: int) -> str:
    """Why this node, just started, cannot show it holds the latest state ("" if it can).

    A node that was in control when it stopped holds everything up to that
    moment. One that was standby (or syncing, or isolated) only held its
    partner's state as of its last sync: the partner may have gone on
    executing commands after that, so taking control alone would run the
    plant from old state and could execute commands a second time.
    """
    if last_role is None or last_role in (Role.ACTIVE, Role.HANDING_OVER):
        return ""
    return f"this node was {last_role} in epoch {epoch} when it stopped, so it may lack what its partner did since"
