"""A PID loop across a kill -9 takeover of the hot-standby pair, with real processes (issue 12, ADR 0018).

The shared simulated building is the plant: while AHU 2's fan runs, zone 3's
temperature is pulled toward ``zone3_setpoint`` (a first-order lag of about
15 s). A PID rule on the active main reads ``zone3_temp`` and writes
``zone3_setpoint`` (15..28 degC) to hold the zone at 22 degC; a second rule
keeps the fan commanded on. Once the loop has settled, the main is killed
with SIGKILL. The judges are the device's own write log (every write with
the pid that sent it), the nodes' command tables and the zone temperature
read from the device by the test:

* the output stays continuous: the backup's first write (the re-assert)
  differs from the main's last by under 1 % of the output range, and its
  first computed output by no more than the loop's usual change over the
  same span of time (1 % or 1.5 times the main's largest while settled);
* the plant stays in band around the setpoint throughout;
* no command id is used twice: the backup's numbers start past every number
  the main used, and every write the backup made at the device is one of its
  own commands, executed once.
"""

from __future__ import annotations

import json
import time

import pytest
from pymodbus.client import ModbusTcpClient

from drivers.modbus import decode_registers
from tests.support.alarms import image, manage
from tests.support.background import Background
from tests.support.pair import FINAL, read_writes
from tests.support.processes import wait_until

pytestmark = [pytest.mark.system, pytest.mark.pair, pytest.mark.timeout(360)]

OPTIONS = {"period_ms": 200, "hold_down_ms": 2000, "failback": "auto"}
OUTPUT, OUTPUT_REGISTER = "zone3_setpoint", 4
PV_REGISTER = 14  # zone3_temp, input register float32
SETPOINT = 22.0
OUT_MIN, OUT_MAX = 15.0, 28.0
ONE_PERCENT = (OUT_MAX - OUT_MIN) / 100
BAND = 0.5
RULE = "zone3_loop"
# SIMC for gain 1, tau 15 s, dead time ~1 s (plant step 0.5 s, poll 0.2 s, sample 0.5 s), tau_c 3 s
PID = {
    "kind": "pid",
    "inputs": {"pv": "{zone3_temp}", "sp": SETPOINT},
    "params": {"kp": 3.75, "ki": 0.25, "sample_time": 0.5, "out_min": OUT_MIN, "out_max": OUT_MAX},
    "output": OUTPUT,
    "cycle_time": 0.5,
    "output_deadband": 0.01,
}
FAN = {"expression": "true", "output": "ahu2_fan_cmd", "cycle_time": 5}


class ZoneProbe(Background):
    """Reads zone3_temp from the device every 0.2 s: ``(time, value)``."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.samples: list[tuple[float, float]] = []

    def _run(self) -> None:
        client = ModbusTcpClient("127.0.0.1", port=self.port, timeout=2)
        try:
            while not self._stop.is_set():
                if client.connect():
                    answer = client.read_input_registers(PV_REGISTER, count=2, device_id=1)
                    if not answer.isError():
                        self.samples.append((time.time(), decode_registers(answer.registers, "float32")))
                self._stop.wait(0.2)
        finally:
            client.close()

    def settled(self, seconds: float, band: float) -> bool:
        if not self.samples or self.samples[-1][0] - self.samples[0][0] < seconds:
            return False
        since = self.samples[-1][0] - seconds
        return all(abs(value - SETPOINT) <= band for at, value in self.samples if at >= since)

    def worst(self, since: float) -> float:
        return max(abs(value - SETPOINT) for at, value in self.samples if at >= since)


def create_rules(node) -> None:
    code = (
        "import json; from bms.logic.models import Rule; "
        f"Rule.objects.create(name='zone3_fan', **json.loads({json.dumps(json.dumps(FAN))})); "
        f"Rule.objects.create(name={RULE!r}, **json.loads({json.dumps(json.dumps(PID))}))"
    )
    manage(node, "shell", "-c", code)


def rule_state(node) -> dict | None:
    row = (image(node) or {}).get(f"logic:{RULE}")
    return row[0] if row and isinstance(row[0], dict) else None


def output_writes(pair, since: float) -> list:
    return [w for w in read_writes(pair.write_log, since) if w.table == "hr" and w.address == OUTPUT_REGISTER]


def largest_change_within(writes: list, span: float) -> float:
    """The largest change of the output between two of ``writes`` at most ``span`` seconds apart."""
    largest = 0.0
    for index, start in enumerate(writes):
        for later in writes[index + 1 :]:
            if later.ts - start.ts > span:
                break
            largest = max(largest, abs(later.float32 - start.float32))
    return largest


def logic_numbers(rows: dict[str, dict]) -> dict[str, list[int]]:
    """The rule's command numbers per accepting node."""
    found: dict[str, list[int]] = {}
    for command_id, row in rows.items():
        if command_id.startswith(f"logic:{RULE}:"):
            found.setdefault(row["accepted_by"], []).append(int(command_id.rsplit(":", 1)[1]))
    return {node: sorted(numbers) for node, numbers in found.items()}


def test_a_pid_keeps_its_output_continuous_and_the_plant_in_band_across_a_kill_9_takeover(make_pair, pair_device):
    pair = make_pair(**OPTIONS)
    pair.up()
    since = time.time()
    with ZoneProbe(pair_device.port) as probe:
        create_rules(pair.main)
        wait_until(lambda: rule_state(pair.main), 60, 0.2, "the loop runs on the main")
        wait_until(lambda: rule_state(pair.backup), 60, 0.2, "the loop's state replicated to the backup")
        wait_until(lambda: probe.settled(8.0, BAND * 0.6), 180, 0.5, f"zone3 settled at {SETPOINT}")
        settled_at = time.time()
        before = rule_state(pair.backup)
        assert before["k"] == "pid" and before["q"] == "good", before

        main_pids = pair.main.pids
        killed_at = pair.main.kill9()
        pair.wait_for_roles(20, backup="active")
        takeover = pair.backup.takeover(killed_at - 1)
        print(f"backup active in epoch {takeover.epoch}, {(takeover.time - killed_at) * 1000:.0f} ms after kill -9")
        wait_until(
            lambda: len([w for w in output_writes(pair, killed_at) if w.pid in pair.backup.pids]) >= 2,
            30,
            0.1,
            "two writes of the loop's output by the backup",
        )
        observed_until = time.time() + 20
        wait_until(lambda: time.time() >= observed_until, 30, 0.5, "20 s of control by the backup")
        worst = probe.worst(since=settled_at)

    # the loop stops (rule disabled on the active backup), so the write log and the command table can be compared
    manage(
        pair.backup,
        "shell",
        "-c",
        f"from bms.logic.models import Rule; r = Rule.objects.get(name={RULE!r}); r.enabled = False; r.save()",
    )
    wait_until(lambda: rule_state(pair.backup) is None, 30, 0.2, "the loop stopped on the backup")
    backup_pids = pair.backup.pids

    def settled_commands() -> list[dict] | None:
        rows = [row for row in pair.backup.commands().values() if row["point_name"] == OUTPUT]
        if any(row["status"] not in FINAL for row in rows):
            return None
        done = [row for row in rows if row["accepted_by"] == "backup" and row["status"] == "succeeded"]
        new = [w for w in output_writes(pair, killed_at) if w.pid in backup_pids]
        return done if len(done) == len(new) else None

    done = wait_until(settled_commands, 30, 0.2, "every backup write at the device is one succeeded command")
    writes = output_writes(pair, since)
    old = [w for w in writes if w.ts < killed_at]
    new = [w for w in writes if w.ts >= killed_at and w.pid in backup_pids]
    assert old and len(new) >= 2 and all(w.pid in main_pids for w in old), (old[-3:], new[:2], main_pids)
    # the first: the re-assert against the device's last value; the second: the first computed output against the
    # re-assert (a kill between the state's replication and the device write makes the re-assert one step ahead)
    jumps = [abs(new[0].float32 - old[-1].float32), abs(new[1].float32 - new[0].float32)]
    # what the loop does from one sample to the next anyway (the plant's noise through kp), while settled
    # over the same span of time as from the main's last write to the backup's first computed one: the takeover
    # spans several samples (more on a loaded machine), and the plant's noise moves the output at every one
    # (CI, 1 December 2026: 0.18 after a 1 s gap against 0.07 for the largest single step while settled)
    steady = [w for w in old if w.ts >= settled_at - 8]
    span = new[1].ts - old[-1].ts
    usual = largest_change_within(steady, span)
    print(
        f"last main write {old[-1].float32:.3f}, first backup writes {[round(w.float32, 3) for w in new[:3]]}; "
        f"jumps {[round(j, 3) for j in jumps]} (1 % = {ONE_PERCENT:.3f}; the main's largest change over "
        f"{span:.2f} s while settled {usual:.3f}); worst |pv - sp| {worst:.2f} degC"
    )
    assert jumps[0] < ONE_PERCENT  # the new active node's first command continues the old one's last
    assert jumps[1] < max(ONE_PERCENT, 1.5 * usual)  # its first computed output: no bigger than a usual change
    assert worst <= BAND

    # command ids: the backup continued the numbering past every number the main used, each executed once
    rows = pair.backup.commands()
    numbers = logic_numbers(rows)
    assert numbers.get("main") and numbers.get("backup"), numbers
    assert min(numbers["backup"]) > max(numbers["main"]), numbers
    assert len(new) == len(done)
