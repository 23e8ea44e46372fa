"""A small, believable plant served over Modbus TCP by a real pymodbus server.

Two air-handling units supply four zones. Each zone's temperature drifts
toward the outside air and is pulled toward its setpoint while its AHU fan
runs (the zone unit's own thermostat); occupancy adds heat; an energy meter
integrates electrical power. Zone 1's unit can instead be put under BMS
control (coil ``zone1_remote``): its thermostat stops and its reheat valve
(``zone1_valve``) sets how much it warms AHU 1's supply air, so a controller
in the BMS (the demo's PID loop) has a real actuator to move. Setpoints, fan
commands, damper and valve positions are holding registers and coils that
any Modbus client (our engine included) can write; the plant reads them back
on every step, so a write visibly changes the building.

The register map is :data:`SIGNALS`; ``bms/points/demo/demo_building.csv``
describes the same map as a point list (a test keeps the two in step).
"""

from __future__ import annotations

import asyncio
import math
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.simulator.bacnet_device import SimulatedBacnetDevice

FUNCTION_CODES = {"co": 1, "di": 2, "hr": 3, "ir": 4}
TABLE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Signal:
    """One named register (or bit) of the simulated plant."""

    name: str
    table: str
    offset: int
    data_type: str
    initial: float | bool


def _zone_signals() -> list[Signal]:
    signals = []
    for zone in range(1, 5):
        signals.append(Signal(f"zone{zone}_temp", "ir", 8 + 2 * zone, "float32", 19.0 + zone * 0.5))
        signals.append(Signal(f"zone{zone}_setpoint", "hr", 2 * (zone - 1), "float32", 21.0))
        signals.append(Signal(f"zone{zone}_occupied", "di", 1 + zone, "bool", False))
    return signals


SIGNALS: tuple[Signal, ...] = (
    Signal("outside_temp", "ir", 0, "int16", 80),  # tenths of a degree
    *_zone_signals(),
    Signal("ahu1_supply_temp", "ir", 20, "float32", 18.0),
    Signal("ahu2_supply_temp", "ir", 22, "float32", 18.0),
    Signal("meter_energy", "ir", 30, "uint32", 1_250_000),  # Wh
    Signal("meter_power", "ir", 32, "float32", 5.0),  # kW
    Signal("ahu1_supply_setpoint", "hr", 10, "float32", 16.0),
    Signal("ahu2_supply_setpoint", "hr", 12, "float32", 16.0),
    Signal("ahu1_damper", "hr", 20, "uint16", 30),  # percent
    Signal("ahu2_damper", "hr", 21, "uint16", 30),
    Signal("ahu1_fan_cmd", "co", 0, "bool", True),
    Signal("ahu2_fan_cmd", "co", 1, "bool", True),
    Signal("ahu1_fan_status", "di", 0, "bool", False),
    Signal("ahu2_fan_status", "di", 1, "bool", False),
    Signal("zone1_valve", "hr", 24, "uint16", 0),  # tenths of a percent open
    Signal("zone1_remote", "co", 2, "bool", False),  # off: zone 1 keeps its own thermostat, as the other zones
)
SIGNALS_BY_NAME = {signal.name: signal for signal in SIGNALS}
_FORMATS = {"int16": (">h", 1), "uint16": (">H", 1), "uint32": (">I", 2), "float32": (">f", 2)}
#: zone 1 under BMS control: the valve fully open warms AHU 1's supply air by this much (K) ...
REHEAT_SPAN = 20.0
#: ... and the zone follows the air it gets with this time constant (s) while the fan runs. Together a first-order
#: plant of gain 0.2 K per % valve and about 30 s: slow enough to watch on the points page and a trend, quick
#: enough that the demo's loop settles within a minute or two (and a test within seconds of that).
ZONE_AIR_TAU = 30.0


def _to_registers(value: float, data_type: str) -> list[int]:
    fmt, width = _FORMATS[data_type]
    number = value if data_type == "float32" else round(value)
    return list(struct.unpack(f">{width}H", struct.pack(fmt, number)))


def _from_registers(registers: list[int], data_type: str) -> float:
    fmt, width = _FORMATS[data_type]
    return struct.unpack(fmt, struct.pack(f">{width}H", *registers[:width]))[0]


def _device() -> SimDevice:
    # id=0 answers every unit id, so a misconfigured unit id still reads (as real gateways often do).
    return SimDevice(
        id=0,
        simdata=(
            [SimData(0, count=TABLE_SIZE, values=False, datatype=DataType.BITS)],
            [SimData(0, count=TABLE_SIZE, values=False, datatype=DataType.BITS)],
            [SimData(0, count=TABLE_SIZE, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=TABLE_SIZE, values=0, datatype=DataType.REGISTERS)],
        ),
    )


class SimulatedBuilding:
    """The plant model plus its Modbus server; ``await start()``, then ``await stop()``.

    ``step_seconds=None`` freezes the physics, which tests use to control
    every value themselves through :meth:`set`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        step_seconds: float | None = 0.5,
        seed: int | None = None,
        trace_packet: Callable[[bool, bytes], bytes] | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.step_seconds = step_seconds
        self.random = random.Random(seed)
        self.server = ModbusTcpServer(_device(), address=(host, port), trace_packet=trace_packet)
        self._tasks: list[asyncio.Task] = []
        self._fan_on_since: dict[int, float | None] = {1: None, 2: None}

    @property
    def port(self) -> int:
        return self.server.transport.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self.server.serve_forever(), name="modbus-sim-server"))
        for _ in range(100):
            if self.server.transport is not None:
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError(f"simulator could not listen on {self.host}:{self.requested_port}")
        for signal in SIGNALS:
            await self.set(signal.name, signal.initial)
        if self.step_seconds is not None:
            self._tasks.append(asyncio.create_task(self._run_physics(), name="modbus-sim-physics"))

    async def stop(self) -> None:
        for task in self._tasks[1:]:
            task.cancel()
        await self.server.shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def set(self, name: str, value: float | bool) -> None:
        """Write a signal straight into the server's datastore (what a sensor would do)."""
        signal = SIGNALS_BY_NAME[name]
        code = FUNCTION_CODES[signal.table]
        values: list = [bool(value)] if signal.data_type == "bool" else _to_registers(float(value), signal.data_type)
        await self.server.context.async_setValues(0, code, signal.offset, values)

    async def get(self, name: str) -> float | bool:
        """Read a signal from the datastore, including what clients wrote."""
        signal = SIGNALS_BY_NAME[name]
        code = FUNCTION_CODES[signal.table]
        if signal.data_type == "bool":
            return bool((await self.server.context.async_getValues(0, code, signal.offset, 1))[0])
        width = _FORMATS[signal.data_type][1]
        registers = await self.server.context.async_getValues(0, code, signal.offset, width)
        return _from_registers(list(registers), signal.data_type)

    async def _run_physics(self) -> None:
        step = self.step_seconds or 0.5
        while True:
            await asyncio.sleep(step)
            await self.step(step)

    async def step(self, dt: float) -> None:
        """Advance the plant by ``dt`` seconds."""
        now = time.time()
        outside = 8.0 + 4.0 * math.sin(now / 600.0) + self.random.uniform(-0.05, 0.05)
        await self.set("outside_temp", round(outside * 10))
        power = 4.0
        supply_of: dict[int, float] = {}
        for ahu in (1, 2):
            fan_cmd = bool(await self.get(f"ahu{ahu}_fan_cmd"))
            # a fan reports running about two seconds after it is commanded on
            if fan_cmd and self._fan_on_since[ahu] is None:
                self._fan_on_since[ahu] = now
            if not fan_cmd:
                self._fan_on_since[ahu] = None
            started = self._fan_on_since[ahu]
            running = started is not None and now - started >= 2.0
            await self.set(f"ahu{ahu}_fan_status", running)
            supply_sp = float(await self.get(f"ahu{ahu}_supply_setpoint"))
            supply = float(await self.get(f"ahu{ahu}_supply_temp"))
            target = supply_sp if running else outside
            supply += (target - supply) * min(1.0, dt / 10.0)
            await self.set(f"ahu{ahu}_supply_temp", supply)
            supply_of[ahu] = supply
            if running:
                power += 6.0 + 0.08 * float(await self.get(f"ahu{ahu}_damper"))
        minute = int(now // 60)
        for zone in range(1, 5):
            ahu = 1 if zone <= 2 else 2
            occupied = (minute + zone) % 4 != 0
            await self.set(f"zone{zone}_occupied", occupied)
            temp = float(await self.get(f"zone{zone}_temp"))
            setpoint = float(await self.get(f"zone{zone}_setpoint"))
            running = self._fan_on_since[ahu] is not None
            if zone == 1 and await self.get("zone1_remote"):
                # the BMS drives the valve: the zone moves toward the supply air as the reheat coil warms it
                opening = min(max(float(await self.get("zone1_valve")) / 1000.0, 0.0), 1.0)
                air = supply_of[ahu] + opening * REHEAT_SPAN
                pull = (air - temp) * min(1.0, dt / ZONE_AIR_TAU) if running else 0.0
            else:
                pull = (setpoint - temp) * min(1.0, dt / 15.0) if running else 0.0
            loss = (outside - temp) * dt / 3000.0
            gain = 0.002 * dt if occupied else 0.0
            temp += pull + loss + gain + self.random.uniform(-0.02, 0.02)
            await self.set(f"zone{zone}_temp", temp)
            power += abs(setpoint - temp) * 1.5
        await self.set("meter_power", power)
        energy = float(await self.get("meter_energy"))
        await self.set("meter_energy", energy + power * 1000.0 * dt / 3600.0)


async def serve(
    host: str,
    port: int,
    bacnet_address: str | None = None,
    bacnet_instance: int = 1001,
    write_log: str | None = None,
) -> None:
    """Run the building until cancelled (used by ``python -m drivers.simulator``).

    With ``bacnet_address`` (``host[/prefix]:port``) the plant's BACnet device
    runs in the same process; its address is printed on the second line (the
    first stays the Modbus line that launchers parse).
    With ``write_log`` every Modbus write received is appended to that file
    (:mod:`drivers.simulator.writelog`).
    """
    building = SimulatedBuilding(host, port)
    if write_log:
        from drivers.simulator.writelog import WriteLog

        WriteLog(write_log).attach(building.server)
    await building.start()
    print(f"simulated building: Modbus TCP on {host}:{building.port}", flush=True)
    device = None
    try:
        if bacnet_address is not None:
            device = SimulatedBacnetDevice(bacnet_address, instance=bacnet_instance)
            await device.start()
            print(f"simulated building: BACnet/IP device {bacnet_instance} on {device.address}", flush=True)
        await asyncio.Future()
    finally:
        if device is not None:
            await device.stop()
        await building.stop()
