"""The sync link against strangers and eavesdroppers, with real nodes (issue 8, item 7; ADR 0009).

A stranger on the sync port must not be able to make a node hold much
before it proved it holds the secret (a few KB per connection, a few
connections at once), nor slow its web side or disturb the roles; a relay
between the nodes must see no building data, no password hash and no value.
"""

from __future__ import annotations

import socket
import struct
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from redundancy.framing import HEADER, HELLO, MAGIC, VERSION
from tests.support.background import Background
from tests.support.pair import RoleSampler
from tests.support.processes import wait_until

pytestmark = [pytest.mark.system, pytest.mark.pair]

ATTACKERS = 60
ANNOUNCED = 16 * 1024 * 1024  # what each stranger's HELLO header claims
SENT = 2 * 1024 * 1024  # what each stranger really sends: held by a node that waits for the announced body
RSS_BOUND_KB = 30 * 1024
HEALTHZ_BOUND_S = 1.5  # the issue saw over 1 s under the flood; an idle node answers in milliseconds


def vm_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


class Watch(Background):
    """A background thread: the node's peak RSS and the slowest /healthz answer while the test attacks it."""

    def __init__(self, pid: int, base_url: str) -> None:
        super().__init__()
        self.pid = pid
        self.url = base_url + "/healthz"
        self.peak_kb = vm_kb(pid, "VmRSS")
        self.slowest_s = 0.0
        self.answers = 0
        self.failures: list[str] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, vm_kb(self.pid, "VmRSS"))
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=15) as response:
                    response.read()
                self.answers += 1
            except Exception as exc:  # recorded, and the test fails on it
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.slowest_s = max(self.slowest_s, time.monotonic() - started)
            self.peak_kb = max(self.peak_kb, vm_kb(self.pid, "VmRSS"))
            time.sleep(0.02)


def closed_by_node(sock: socket.socket, wait: float) -> bool:
    """True when the node closed the connection (EOF or reset) within ``wait`` seconds; what it sent is discarded."""
    sock.settimeout(wait)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def flood(port: int) -> socket.socket:
    """A stranger announcing a 16 MiB HELLO and sending 2 MiB of it, then holding the connection open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(HEADER.pack(MAGIC, VERSION, HELLO, 1, ANNOUNCED) + b"\xa5" * SENT)
    except (ConnectionResetError, BrokenPipeError):
        pass  # the node refused it mid-way: exactly what should happen
    return sock


def rejected_delta(node, before: dict[str, int]) -> dict[str, int]:
    now = node.frames_rejected()
    return {reason: count - before.get(reason, 0) for reason, count in now.items() if count != before.get(reason, 0)}


def test_strangers_on_the_sync_port_cannot_starve_the_node_nor_move_the_roles(make_pair):
    pair = make_pair(period_ms=100)
    pair.up()
    main = pair.main
    pid = main.engine_process.pid
    changes_before = pair.all_role_changes()
    rejected_before = main.frames_rejected()
    rss_before = vm_kb(pid, "VmRSS")
    sockets: list[socket.socket] = []
    try:
        with RoleSampler(pair, interval=0.05) as roles, Watch(pid, main.base_url) as watch:
            # 1. Sixty strangers announce 16 MiB HELLO bodies and send 2 MiB each, from ten threads at once.
            with ThreadPoolExecutor(10) as pool:
                sockets.extend(pool.map(lambda _: flood(main.sync_port), range(ATTACKERS)))
            closed = sum(closed_by_node(sock, 15) for sock in sockets)
            wait_until(lambda: sum(rejected_delta(main, rejected_before).values()) >= ATTACKERS, 30, 0.1, "counted")
            flood_rejected = rejected_delta(main, rejected_before)
            flood_peak_kb = watch.peak_kb
            print(
                f"main RSS before {rss_before / 1024:.1f} MB, peak during the flood {flood_peak_kb / 1024:.1f} MB "
                f"(growth {(flood_peak_kb - rss_before) / 1024:.1f} MB); {closed}/{ATTACKERS} closed by the node; "
                f"rejected {flood_rejected}"
            )
            assert flood_peak_kb - rss_before < RSS_BOUND_KB, "the strangers made the node hold their bytes"
            assert closed == ATTACKERS, "every flooding stranger is refused (oversize, or busy beyond the limits)"
            assert flood_rejected.get("oversize", 0) + flood_rejected.get("busy", 0) == ATTACKERS, flood_rejected
            for sock in sockets:
                sock.close()
            sockets.clear()

            # 2. Twenty silent strangers from one address: four may handshake (until the deadline), the rest are
            #    closed at once as "busy".
            rejected_mid = main.frames_rejected()
            sockets.extend(socket.create_connection(("127.0.0.1", main.sync_port), timeout=30) for _ in range(20))
            busy = wait_until(
                lambda: rejected_delta(main, rejected_mid).get("busy", 0) >= 16 and rejected_delta(main, rejected_mid),
                30,
                0.1,
                "the connections beyond the limit refused as busy",
            )
            silent_closed = sum(closed_by_node(sock, 30) for sock in sockets)
            silent_rejected = wait_until(
                lambda: (delta := rejected_delta(main, rejected_mid)).get("handshake", 0) >= 4 and delta,
                30,
                0.1,
                "the four handshaking ones dropped at the deadline",
            )
            for _ in range(20):  # the roles sampled for a while after the attack too (about 2 s)
                time.sleep(0.1)
        rss_after = vm_kb(pid, "VmRSS")
        print(
            f"main RSS before {rss_before / 1024:.1f} MB, peak in the whole test {watch.peak_kb / 1024:.1f} MB, "
            f"after {rss_after / 1024:.1f} MB (growth at peak {(watch.peak_kb - rss_before) / 1024:.1f} MB)"
        )
        print(f"silent: {silent_closed}/20 closed; busy at once {busy}; in the end {silent_rejected}")
        print(
            f"/healthz: {watch.answers} answers, slowest {watch.slowest_s * 1000:.0f} ms; roles seen {dict(roles.seen)}"
        )

        assert watch.peak_kb - rss_before < RSS_BOUND_KB
        assert silent_rejected.get("busy") == 16 and silent_rejected.get("handshake") == 4, silent_rejected
        assert silent_closed == 20
        assert not watch.failures and watch.answers > 0, watch.failures
        assert watch.slowest_s < HEALTHZ_BOUND_S
        assert set(roles.seen) == {("active", "standby")}, roles.seen
        assert pair.all_role_changes() == changes_before
        assert pair.roles() == {"main": "active", "backup": "standby"}
        partner = main.state()["status"]["partners"][0]
        assert partner["heartbeat_age_ms"] < pair.timeout * 1000, partner
    finally:
        for sock in sockets:
            sock.close()


def test_a_relay_between_the_nodes_reads_no_names_hashes_or_values(make_pair):
    pair = make_pair(period_ms=100, proxied=True, record=True)
    pair.up()
    status, answer = pair.main.submit("zone1_setpoint", 23.4567, "relay-1")
    assert (status, answer.get("status")) == (200, "succeeded"), answer

    def replicated() -> bool:
        row = pair.backup.commands().get("relay-1")
        return row is not None and row["status"] == "succeeded"

    wait_until(replicated, 30, 0.1, "the command replicated to the backup, succeeded")
    value = b"\xcb" + struct.pack(">d", 23.4567)
    # Every proxy carried at least the configuration dump, the image and this command by now.
    wait_until(lambda: all(proxy.recorded for proxy in pair.proxies.values()), 10, message="recordings")
    carried = {name: b"".join(bytes(buffer) for buffer in proxy.recorded) for name, proxy in pair.proxies.items()}
    print({name: f"{len(data):,} bytes" for name, data in carried.items()})
    assert sum(len(data) for data in carried.values()) > 10_000  # the dump, snapshot and deltas did cross
    needles = {"point name": b"zone1_setpoint", "password hash": b"pbkdf2_sha256", "written value": value}
    leaks = [(label, name) for name, data in carried.items() for label, needle in needles.items() if needle in data]
    assert leaks == [], f"in clear on the link (what, through which proxy): {leaks}"
