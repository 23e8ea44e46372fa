"""The simulated building's BACnet/IP device: a small cooling plant served by a real bacpypes3 application.

It has every object type the driver supports: analog, binary and multi-state
inputs, outputs and values. Outputs and the commandable values keep a
priority array, so writes at a priority and relinquish behave as on a real
controller. Inputs move a little on every step so that COV subscribers get
notifications. The objects are :data:`OBJECTS`; ``bms/points/demo/
demo_bacnet.csv`` describes the same objects as a point list (a test keeps
the two in step).

For tests and benchmarks the device can be built without COV, without
ReadPropertyMultiple or without segmentation (as some small controllers
are), with any number of extra analog values, and it counts the requests
it receives per service.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bacpypes3.app import Application
from bacpypes3.local.analog import AnalogInputObject, AnalogOutputObject, AnalogValueObject, AnalogValueObjectCmd
from bacpypes3.local.binary import BinaryInputObject, BinaryOutputObject, BinaryValueObject
from bacpypes3.local.cmd import Commandable
from bacpypes3.local.cov import GenericCriteria
from bacpypes3.local.multistate import MultiStateInputObject, MultiStateOutputObject, MultiStateValueObject
from bacpypes3.primitivedata import Null

from drivers import bacnet_stack as stack
from drivers.bacnet_address import to_raw


class BinaryValueCmd(Commandable, BinaryValueObject):
    """A commandable binary value with COV support (bacpypes3's own lacks the local-object mix-in)."""

    _required = ("priorityArray", "relinquishDefault")


# bacpypes3 0.0.110 gives multi-state objects the COV-increment criteria, but they have no
# cov-increment property, so a subscription fails with "operational-problem"; any change counts instead.
class MultiStateInput(MultiStateInputObject):
    """A multi-state input whose subscriptions work."""

    _cov_criteria = GenericCriteria


class MultiStateOutput(MultiStateOutputObject):
    """A multi-state output whose subscriptions work."""

    _cov_criteria = GenericCriteria


class MultiStateValueCmd(Commandable, MultiStateValueObject):
    """A commandable multi-state value (bacpypes3 ships none) whose subscriptions work."""

    _cov_criteria = GenericCriteria
    _required = ("priorityArray", "relinquishDefault")


@dataclass(frozen=True, slots=True)
class SimObject:
    """One object of the simulated device: identity, class, initial value and extra properties."""

    name: str
    object_type: str
    instance: int
    initial: float | bool | int
    description: str
    unit: str = ""
    commandable: bool = False

    @property
    def address(self) -> str:
        return f"{self.object_type}:{self.instance}"


OBJECTS: tuple[SimObject, ...] = (
    SimObject("chw_supply_temp", "analog-input", 1, 7.5, "Chilled water supply temperature", "degC"),
    SimObject("chw_return_temp", "analog-input", 2, 12.0, "Chilled water return temperature", "degC"),
    SimObject("chw_valve", "analog-output", 1, 0.0, "Chilled water valve", "%", commandable=True),
    SimObject("chw_setpoint", "analog-value", 1, 7.0, "Chilled water setpoint", "degC", commandable=True),
    SimObject("chiller_load", "analog-value", 2, 35.0, "Chiller load", "%"),
    SimObject("pump1_status", "binary-input", 1, False, "Pump 1 running"),
    SimObject("pump1_cmd", "binary-output", 1, False, "Pump 1 command", commandable=True),
    SimObject("plant_enable", "binary-value", 1, True, "Plant enable", commandable=True),
    SimObject("chiller_state", "multi-state-input", 1, 1, "Chiller state (1 off, 2 starting, 3 running, 4 alarm)"),
    SimObject(
        "tower_fan_speed", "multi-state-output", 1, 1, "Tower fan speed (1 off, 2 low, 3 high)", commandable=True
    ),
    SimObject("plant_mode", "multi-state-value", 1, 2, "Plant mode (1 off, 2 auto, 3 manual)", commandable=True),
)
OBJECTS_BY_NAME = {obj.name: obj for obj in OBJECTS}
#: with ``extra_values=N`` the device also has analog values N of them from this instance on (benchmarks, batching)
EXTRA_VALUES_FROM = 1000
STATE_TEXTS = {
    "chiller_state": ["off", "starting", "running", "alarm"],
    "tower_fan_speed": ["off", "low", "high"],
    "plant_mode": ["off", "auto", "manual"],
}
UNITS = {"degC": "degreesCelsius", "%": "percent"}


def _build(sim: SimObject) -> Any:
    common: dict[str, Any] = {
        "objectIdentifier": (sim.object_type, sim.instance),
        "objectName": sim.name,
        "description": sim.description,
        "outOfService": False,
        "reliability": "noFaultDetected",
    }
    if sim.object_type.startswith("analog"):
        common.update(presentValue=float(sim.initial), units=UNITS.get(sim.unit, "noUnits"), covIncrement=0.05)
        if sim.object_type == "analog-input":
            return AnalogInputObject(**common)
        if sim.object_type == "analog-output":
            return AnalogOutputObject(relinquishDefault=float(sim.initial), **common)
        if sim.commandable:
            return AnalogValueObjectCmd(relinquishDefault=float(sim.initial), **common)
        return AnalogValueObject(**common)
    if sim.object_type.startswith("binary"):
        common.update(presentValue="active" if sim.initial else "inactive")
        if sim.object_type == "binary-input":
            return BinaryInputObject(polarity="normal", **common)
        if sim.object_type == "binary-output":
            return BinaryOutputObject(polarity="normal", relinquishDefault=common["presentValue"], **common)
        return BinaryValueCmd(relinquishDefault=common["presentValue"], **common)
    states = STATE_TEXTS[sim.name]
    common.update(presentValue=int(sim.initial), numberOfStates=len(states), stateText=states)
    if sim.object_type == "multi-state-input":
        return MultiStateInput(**common)
    if sim.object_type == "multi-state-output":
        return MultiStateOutput(relinquishDefault=int(sim.initial), **common)
    return MultiStateValueCmd(relinquishDefault=int(sim.initial), **common)


class _DeviceApplication(Application):
    """The device's bacpypes3 application, counting the confirmed requests it serves by service."""

    requests: Counter[str]

    async def indication(self, apdu: Any) -> None:  # type: ignore[override]
        self.requests[type(apdu).__name__] += 1
        await super().indication(apdu)


def _application_class(cov: bool, rpm: bool) -> type[_DeviceApplication]:
    """The device's application class; a service set to None is rejected by bacpypes3 as unrecognized."""
    missing: dict[str, None] = {}
    if not cov:
        missing["do_SubscribeCOVRequest"] = None
    if not rpm:
        missing["do_ReadPropertyMultipleRequest"] = None
    return type("_LimitedDeviceApplication", (_DeviceApplication,), missing) if missing else _DeviceApplication


def check_udp_port_free(host: str, port: int) -> None:
    """Fail if another socket holds ``host:port``; bacpypes3 binds with SO_REUSEPORT and would share it silently."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RuntimeError(f"UDP port {host}:{port} is in use: {exc}") from exc


class SimulatedBacnetDevice:
    """The plant's BACnet device; ``await start()``, then ``await stop()`` (start again to simulate a restart).

    ``address`` is bacpypes3's ``host[/prefix]:port`` (``prefix`` matters only
    for broadcasts). ``step_seconds=None`` freezes the values, for tests.
    """

    def __init__(
        self,
        address: str = "127.0.0.1:0",
        instance: int = 1001,
        name: str = "sim-plant-bacnet",
        step_seconds: float | None = 1.0,
        cov: bool = True,
        rpm: bool = True,
        segmentation: bool = True,
        extra_values: int = 0,
        seed: int | None = None,
    ) -> None:
        self.requested_address = address
        self.instance = instance
        self.name = name
        self.step_seconds = step_seconds
        self.cov = cov
        self.rpm = rpm
        self.segmentation = segmentation
        self.extra_values = extra_values
        self.random = random.Random(seed)
        self.app: _DeviceApplication | None = None
        self.port = 0
        self.requests: Counter[str] = Counter()
        self._task: asyncio.Task | None = None

    @property
    def host(self) -> str:
        return self.requested_address.rpartition(":")[0].partition("/")[0]

    @property
    def address(self) -> str:
        """Where clients reach the device, ``host:port``."""
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        host, _, port_text = self.requested_address.rpartition(":")
        # After a stop, come back on the same port, as a restarted controller does.
        port = self.port or int(port_text)
        if port:
            check_udp_port_free(host.partition("/")[0], port)
        app_class = _application_class(self.cov, self.rpm)
        objects = [_build(sim) for sim in OBJECTS]
        objects += [
            AnalogValueObject(
                objectIdentifier=("analog-value", EXTRA_VALUES_FROM + index),
                objectName=f"extra_av{index}",
                presentValue=float(index),
                outOfService=False,
            )
            for index in range(self.extra_values)
        ]
        app = await stack.open_application(f"{host}:{port}", self.instance, self.name, app_class=app_class)
        if not self.segmentation:
            # like many small controllers: a response that does not fit one APDU is refused, not segmented
            app.device_object.segmentationSupported = "noSegmentation"
        app.requests = self.requests
        for obj in objects:
            app.add_object(obj)
        self.port = await stack.bound_port(app)
        self.app = app
        if self.step_seconds is not None:
            self._task = asyncio.create_task(self._run(), name="bacnet-sim-physics")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        stack.close_application(self.app)
        self.app = None

    def obj(self, name: str) -> Any:
        if self.app is None:
            raise RuntimeError("the simulated BACnet device is not running")
        return self.app.get_object_name(name)

    def get(self, name: str) -> float | bool | int | None:
        """The present value of an object as a raw value (what a client would read)."""
        kind = "binary" if OBJECTS_BY_NAME[name].object_type.startswith("binary") else None
        return to_raw(self.obj(name).presentValue, kind)

    def set(self, name: str, value: float | bool | int) -> None:
        """Set a value as the plant would (an input's sensor; a commandable object's priority 16)."""
        sim = OBJECTS_BY_NAME[name]
        if sim.object_type.startswith("binary"):
            self.obj(name).presentValue = "active" if value else "inactive"
        elif sim.object_type.startswith("multi-state"):
            self.obj(name).presentValue = int(value)
        else:
            self.obj(name).presentValue = float(value)

    def set_flags(self, name: str, fault: bool = False, out_of_service: bool = False) -> None:
        """Put an object in fault (its reliability) or out of service; bacpypes3 derives the status flags."""
        obj = self.obj(name)
        obj.reliability = "unreliableOther" if fault else "noFaultDetected"
        obj.outOfService = out_of_service

    def priority_array(self, name: str) -> list[float | bool | int | None]:
        """The device-side priority array of a commandable object (index 0 = priority 1)."""
        kind = "binary" if OBJECTS_BY_NAME[name].object_type.startswith("binary") else None
        slots = []
        for entry in self.obj(name).priorityArray:
            choice = entry._choice
            slots.append(None if choice == "null" else to_raw(getattr(entry, choice), kind))
        return slots

    def relinquish_all(self, name: str) -> None:
        obj = self.obj(name)
        for index in range(16):
            obj.priorityArray[index] = type(obj.priorityArray[index])(null=Null(()))

    async def _run(self) -> None:
        step = self.step_seconds or 1.0
        while True:
            await asyncio.sleep(step)
            self.step(step)

    def step(self, dt: float) -> None:
        """Advance the plant by ``dt`` seconds: the pump follows its command, temperatures follow the pump."""
        now = time.time()
        running = bool(self.get("pump1_cmd")) and bool(self.get("plant_enable"))
        self.set("pump1_status", running)
        setpoint = float(self.get("chw_setpoint") or 7.0)
        supply = float(self.get("chw_supply_temp") or 7.5)
        target = setpoint if running else 14.0
        supply += (target - supply) * min(1.0, dt / 30.0) + self.random.uniform(-0.03, 0.03)
        self.set("chw_supply_temp", round(supply, 2))
        load = 35.0 + 10.0 * math.sin(now / 300.0) + self.random.uniform(-0.5, 0.5)
        self.set("chw_return_temp", round(supply + load / 8.0, 2))
        self.set("chiller_load", round(load, 1))
        self.set("chiller_state", 3 if running else 1)
