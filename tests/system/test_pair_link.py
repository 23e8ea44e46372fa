"""The sync link under faults, with real nodes: cut (with and without the witness), flapping, bad input.

The nodes dial each other through test-controlled proxies
(:mod:`tests.support.proxy`), so the test can cut the link while both nodes
live. Bad input is sent straight to a running node's sync port.
"""

from __future__ import annotations

import socket
import time

import pytest

from redundancy.framing import HEADER, HELLO, MAGIC, VERSION, Sealer, hello_key
from tests.support.processes import wait_until

pytestmark = [pytest.mark.system, pytest.mark.pair]


def hold(seconds: float, check, interval: float = 0.05) -> int:
    """Call ``check`` every ``interval`` for ``seconds``; return how many times it ran (each must pass)."""
    deadline, runs = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        check()
        runs += 1
        time.sleep(interval)
    return runs


SYNC_KEYS = (
    "caught_up",
    "history_backlog",
    "history_stuck",
    "history_resends",
    "history_store_failures",
    "history_rows_sent",
    "history_rows_received",
)


def history_difference(pair) -> str:
    """What differs between the two nodes' history, and how each node's replication sees it.

    The rows only one node holds (with their stamps), per table and origin the highest stamp each node holds
    (the cursors it would announce), and each node's replication counters: enough to tell a row never sent
    from one sent and not stored, or acknowledged past.
    """
    held = {
        node.name: {(t, r["origin"], r["origin_seq"]): r for t, r in node.history_rows()}
        for node in pair.nodes.values()
    }
    lines = []
    for name, other in (("main", "backup"), ("backup", "main")):
        for key in sorted(held[name].keys() - held[other].keys()):
            row = held[name][key]
            what = row.get("kind") or row.get("action") or row.get("status") or ""
            text = str(row.get("message") or row.get("command_id") or "")[:160]
            lines.append(f"only on {name}: {key} epoch {row['epoch']} time {row.get('time')} {what}: {text}")
    both = sorted(held["main"].keys() & held["backup"].keys())
    lines += [f"differs: {key}" for key in both if held["main"][key] != held["backup"][key]]
    for name, rows in held.items():
        tops: dict[tuple[str, str], int] = {}
        for table, origin, seq in rows:
            tops[(table, origin)] = max(tops.get((table, origin), 0), seq)
        lines.append(f"{name} holds up to {dict(sorted(tops.items()))}")
    for node in pair.nodes.values():
        state = node.state()
        sync = (state.get("status") or {}).get("sync") or {}
        counters = {key: sync.get(key) for key in SYNC_KEYS}
        lines.append(f"{node.name} ({state['role']}, epoch {state['epoch']}): {counters}")
    return "\n".join(lines)


def wait_history_identical(pair, timeout: float = 30.0) -> dict:
    try:
        return pair.wait_history_identical(timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{history_difference(pair)}") from None


def test_link_cut_without_witness_gives_two_active_nodes_and_the_lower_epoch_steps_down(make_pair):
    pair = make_pair(period_ms=100, proxied=True, failback="manual")
    pair.up()
    cut_at = time.time()
    pair.cut()
    # Documented split brain: without a witness the standby cannot tell a cut link from a dead partner.
    wait_until(lambda: pair.backup.role() == "active", 10, message="backup takes over")
    assert pair.main.role() == "active"
    takeover = pair.backup.takeover(after=cut_at)
    print(f"link cut: backup active in epoch {takeover.epoch} after {(takeover.time - cut_at) * 1000:.0f} ms")
    time.sleep(3 * pair.timeout)
    assert (pair.main.role(), pair.backup.role()) == ("active", "active")

    restored_at = time.time()
    pair.restore()
    step_down = wait_until(
        lambda: next((c for c in pair.main.role_changes(source="main") if c.old == "active"), None),
        15,
        message="main (lower epoch) steps down",
    )
    print(f"link restored: main stepped down after {(step_down.time - restored_at) * 1000:.0f} ms: {step_down.reason}")
    assert step_down.epoch == takeover.epoch
    pair.wait_for_roles(30, main="standby", backup="active")
    # Both sides' history of the split is merged, nothing dropped.
    digest = wait_history_identical(pair)
    assert digest["main"]["counts"]["events.event"] >= 2 and digest["backup"]["counts"]["events.event"] >= 2


def test_link_cut_with_witness_the_standby_goes_isolated_never_active(make_pair):
    pair = make_pair(period_ms=100, proxied=True, witness=True)
    pair.up()
    cut_at = time.time()
    pair.cut()
    wait_until(lambda: pair.backup.role() == "isolated", 10, message="backup isolated")

    def neither_changes() -> None:
        assert pair.main.role() == "active"
        assert pair.backup.role() == "isolated"

    runs = hold(10 * pair.timeout, neither_changes)
    pair.restore()
    pair.wait_for_roles(30, main="active", backup="standby")
    changes = [c for c in pair.all_role_changes() if c.time >= cut_at]
    print(f"witness: {runs} checks while cut; role changes {[(c.node, c.old, c.new) for c in changes]}")
    assert [(c.node, c.new) for c in changes][:1] == [("backup", "isolated")]
    assert all(c.new != "active" for c in changes), changes
    assert all(c.node == "backup" for c in changes), changes


def test_a_flapping_link_faster_than_the_timeout_causes_no_failover(make_pair):
    pair = make_pair(period_ms=200, proxied=True)  # timeout 600 ms
    pair.up()
    started = time.time()
    for _ in range(10):
        pair.cut()
        time.sleep(pair.timeout / 4)
        pair.restore()
        time.sleep(pair.timeout)
    time.sleep(2 * pair.timeout)
    changes = [c for c in pair.all_role_changes() if c.time >= started]
    losses = pair.backup.state()["status"]["this"].get("link_losses")
    print(f"flapping link (10 cuts of {pair.timeout / 4 * 1000:.0f} ms): role changes {changes}, {losses} loss(es)")
    # None of the cuts lasts the timeout: nobody takes control. Every cut is seen (the damper counts it).
    assert changes == []
    assert losses >= 5
    assert pair.roles() == {"main": "active", "backup": "standby"}


def test_short_stalls_of_the_active_node_cause_at_most_one_failover(make_pair):
    # A 15 s flap window: long enough to cover the stalls, short enough that a failback held back by
    # repeated losses still happens within this test.
    pair = make_pair(period_ms=100, extra_env={"BMS_FLAP_WINDOW_MS": "15000"})  # timeout 300 ms
    pair.up()
    started = time.time()
    for _ in range(10):
        pair.main.sigstop()
        time.sleep(pair.timeout / 2)
        pair.main.sigcont()
        time.sleep(3 * pair.timeout)
    time.sleep(2 * pair.timeout)
    # The pair settles as it started: a failover, if a stall outlasted the timeout on a loaded machine, is
    # followed by one failback once the link is steady.
    pair.wait_for_roles(45, main="active", backup="standby")
    changes = [c for c in pair.all_role_changes() if c.time >= started]
    failovers = [c for c in changes if c.new == "active" and not c.reason.startswith("handover from")]
    print(f"10 stalls of {pair.timeout / 2 * 1000:.0f} ms: {len(failovers)} failover(s); role changes {changes}")
    assert len(failovers) <= 1, failovers
    if not failovers:
        assert changes == []  # a stall shorter than the timeout changes nothing
    else:
        # Only the failover's consequences: main steps down and resyncs, then one failback.
        assert [(c.node, c.new) for c in changes] == [
            ("backup", "active"),
            ("main", "syncing"),
            ("main", "standby"),
            ("backup", "handing_over"),
            ("main", "active"),
            ("backup", "standby"),
        ], changes


def _send_and_wait_close(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` to the sync port; return what the node answered before it closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return answer


def test_bad_input_on_the_link_is_rejected_and_the_heartbeat_goes_on(make_pair):
    pair = make_pair(period_ms=100, proxied=True, record=True)
    pair.up()
    # The proxy named "backup" carries main's dialled connection to backup: record a few frames of it.
    recording = pair.proxies["backup"].recorded
    wait_until(lambda: recording and len(recording[-1]) > 2000, 10, message="frames recorded")
    captured = bytes(recording[-1])
    before = pair.all_role_changes()
    target = pair.backup

    wrong = Sealer(hello_key(b"not-the-pair-secret-at-all"), b"c>s").seal(
        {"t": "hello", "node": "main", "nonce": b"x" * 16, "version": 1}, kind=HELLO
    )
    assert _send_and_wait_close(target.sync_port, wrong) == b""  # wrong secret: no answer
    assert _send_and_wait_close(target.sync_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\0" * 64) == b""
    oversize = HEADER.pack(MAGIC, VERSION, HELLO, 1, 2**31)
    assert _send_and_wait_close(target.sync_port, oversize + b"\0" * 64) == b""
    # Replay: the recorded hello is answered (it only proves the secret), but the recorded session frames
    # were sealed with that connection's nonces and fail here.
    replay = _send_and_wait_close(target.sync_port, captured)
    assert replay[:2] == MAGIC

    def counted() -> dict | None:
        rejected = target.frames_rejected()
        ok = rejected.get("auth", 0) >= 2 and rejected.get("garbage", 0) >= 1 and rejected.get("oversize", 0) >= 1
        return rejected if ok else None

    rejected = wait_until(counted, 10, message="rejections counted in the status")
    print(f"frames_rejected on {target.name}: {rejected}")
    time.sleep(5 * pair.timeout)
    assert pair.all_role_changes() == before
    assert pair.roles() == {"main": "active", "backup": "standby"}
    partner = target.state()["status"]["partners"][0]
    assert partner["heartbeat_age_ms"] < pair.timeout * 1000, partner
    log = target.log_text()
    assert "rejected a connection" in log
