"""BACnet discovery: Who-Is / I-Am, and reading a device's objects as candidate points.

A broadcast Who-Is needs a local address with its network prefix (for the
broadcast address) on UDP port 47808, where devices listen and where many of
them send their I-Am; :func:`default_interface` finds the host's main
interface. A directed Who-Is (``target``) works from any port.

Whatever a user typed is checked before any BACnet traffic: a malformed or
unresolvable address raises :class:`DiscoveryInputError` (the user's input
is wrong), and the local endpoint is bind-tested with a plain socket first,
because bacpypes3 retries a failed bind for ever in the background and would
only show silence. Objects of types the driver cannot read are counted per
type (:attr:`FoundObjects.skipped`) instead of being dropped silently.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from bacpypes3.apdu import ErrorRejectAbortNack, IAmRequest
from bacpypes3.app import Application
from bacpypes3.basetypes import PropertyIdentifier
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier
from bacpypes3.vendor import get_vendor_info

from drivers import bacnet_stack as stack
from drivers.bacnet_address import OBJECT_TYPES
from drivers.base import CommunicationError, DriverError

BACNET_PORT = 47808
UNITS = {
    "degrees-celsius": "degC",
    "degrees-fahrenheit": "degF",
    "percent": "%",
    "percent-relative-humidity": "%RH",
    "kilowatts": "kW",
    "kilowatt-hours": "kWh",
    "pascals": "Pa",
    "liters-per-second": "l/s",
    "cubic-meters-per-hour": "m3/h",
    "parts-per-million": "ppm",
    "no-units": "",
}
NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_.\-]+")
# HOST[/PREFIX][:PORT]; HOST is an IPv4 address or a name (no IPv6: the driver speaks BACnet/IPv4)
ADDRESS_FORMAT = re.compile(r"(?P<host>[A-Za-z0-9_.\-]+)(?:/(?P<prefix>\d{1,2}))?(?::(?P<port>[^:]*))?")
#: the Who-Is wildcard instance range ends here (4194303 means "any device")
MAX_INSTANCE = 4194303


class DiscoveryInputError(DriverError):
    """What the user gave cannot be used: a malformed or unresolvable address, a port or instance out of range.

    A :class:`~drivers.base.DriverError` (one operator-readable line) that
    says the request was wrong, not the network: the web page answers 400.
    """


@dataclass(frozen=True, slots=True)
class FoundDevice:
    """A device that answered Who-Is with I-Am."""

    instance: int
    host: str
    port: int
    vendor_id: int
    max_apdu: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class FoundObject:
    """An object of a device that the driver can read, described as a point."""

    address: str  # point address, e.g. analog-input:1
    name: str  # the object's name on the device
    description: str
    unit: str
    data_type: str
    commandable: bool
    #: numberOfStates of a multi-state object (its present value runs 1..states); None for other kinds
    states: int | None = None


class FoundObjects(list[FoundObject]):
    """A device's objects the driver can read, and how many of each other type were left out."""

    def __init__(self, objects: Iterable[FoundObject] = (), skipped: dict[str, int] | None = None) -> None:
        super().__init__(objects)
        #: object type -> number of objects of that type that are not candidate points (the device object excluded)
        self.skipped: dict[str, int] = dict(skipped or {})

    @property
    def skipped_count(self) -> int:
        return sum(self.skipped.values())

    def skipped_text(self) -> str:
        """``"3 skipped (unsupported types: 2 trend-log, 1 schedule)"``, or ``""`` when nothing was skipped."""
        if not self.skipped:
            return ""
        by_count = sorted(self.skipped.items(), key=lambda item: (-item[1], item[0]))
        kinds = ", ".join(f"{count} {object_type}" for object_type, count in by_count)
        return f"{self.skipped_count} skipped (unsupported types: {kinds})"


def default_interface(port: int = BACNET_PORT) -> str:
    """``ip/prefix:port`` of the host's main interface, for a broadcast Who-Is.

    The interface of the default route if there is one, else the first global
    IPv4 address (a plant network often has no default route).
    """
    try:
        listing = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise CommunicationError(f"cannot list interfaces ({exc}); give --local ADDR/PREFIX") from exc
    interfaces = {
        match.group(1): match.group(2)
        for match in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+)/(\d+) .*scope global", listing)
    }
    if not interfaces:
        raise CommunicationError("no IPv4 interface to broadcast from; give --local ADDR/PREFIX")
    host = next(iter(interfaces))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))  # sends nothing: only asks the kernel for the outgoing interface
            host = probe.getsockname()[0] if probe.getsockname()[0] in interfaces else host
        except OSError:
            pass  # no default route: keep the first interface
    return f"{host}/{interfaces[host]}:{port}"


def broadcast_of(local: str) -> str:
    """The broadcast address a Who-Is from ``local`` (``ip/prefix:port``) goes to, for messages."""
    interface, _, port = local.rpartition(":")
    network = ipaddress.IPv4Interface(interface).network
    return f"{network.broadcast_address}:{port}"


def _resolve(host: str, what: str, text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    try:
        return socket.gethostbyname(host)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise DiscoveryInputError(f"{what} {text!r}: cannot resolve host {host!r} ({reason})") from None


def _split(text: str, what: str, usage: str) -> tuple[str, int | None, int | None]:
    """``text`` as (host, prefix or None, port or None), checked; one clear line on error."""
    match = ADDRESS_FORMAT.fullmatch(text.strip())
    if match is None:
        raise DiscoveryInputError(f"{what} {text!r} is not {usage}")
    prefix = port = None
    if match.group("prefix") is not None:
        prefix = int(match.group("prefix"))
        if prefix > 32:
            raise DiscoveryInputError(f"{what} {text!r}: prefix /{prefix} is not 0..32")
    if match.group("port") is not None:
        if not match.group("port").isdigit():
            raise DiscoveryInputError(f"{what} {text!r}: port {match.group('port')!r} is not a number")
        port = int(match.group("port"))
        if port > 65535:
            raise DiscoveryInputError(f"{what} {text!r}: port {port} is out of range (0..65535)")
    return match.group("host"), prefix, port


def parse_target(text: str) -> Address:
    """The device address of a directed Who-Is, ``HOST[:PORT]`` (port 47808 by default), resolved and checked."""
    host, prefix, port = _split(text, "device address", "HOST[:PORT]")
    if prefix is not None:
        raise DiscoveryInputError(f"device address {text!r}: a device address has no /prefix; use HOST[:PORT]")
    if port == 0:
        raise DiscoveryInputError(f"device address {text!r}: port 0 is not a device's port")
    return Address(f"{_resolve(host, 'device address', text)}:{BACNET_PORT if port is None else port}")


def check_local_address(text: str) -> tuple[tuple[str, int], ...]:
    """Check ``ADDR[/PREFIX]:PORT`` and bind-test it; the socket addresses bacpypes3 will bind.

    Input errors come first, as :class:`DiscoveryInputError`; then the bind
    test (:func:`~drivers.bacnet_stack.check_local_address`, the driver's
    too) fails where bacpypes3 would (an address not on this host, a
    privileged port) and also where another socket holds the port: bacpypes3
    would share it silently and steal that program's replies (one endpoint
    per local address). A failed bind is a :class:`CommunicationError` with
    the operating system's reason.
    """
    host, _, _ = _split(text, "local address", "ADDR[/PREFIX]:PORT")
    _resolve(host, "local address", text)
    try:
        return stack.check_local_address(text)
    except stack.EndpointError as exc:
        raise CommunicationError(f"cannot open a BACnet endpoint on {text}: {exc}") from None


async def who_is(
    local_address: str,
    target: str | None = None,
    instance: int | None = None,
    wait: float = 3.0,
) -> list[FoundDevice]:
    """Send Who-Is (to ``target`` ``host:port``, else broadcast) and collect the I-Ams for ``wait`` seconds."""
    app = await open_endpoint(local_address)
    try:
        return await who_is_with(app, target, instance, wait)
    finally:
        stack.close_application(app)


async def who_is_with(
    app: Application, target: str | None = None, instance: int | None = None, wait: float = 3.0
) -> list[FoundDevice]:
    """:func:`who_is` on an application that is already open."""
    address = parse_target(target) if target else None
    if instance is not None and not 0 <= instance <= MAX_INSTANCE:
        raise DiscoveryInputError(f"device instance {instance} is out of range (0..{MAX_INSTANCE})")
    if not wait > 0:
        raise DiscoveryInputError(f"the wait for answers must be more than 0 s, not {wait}")
    low = high = instance
    i_ams: list[IAmRequest] = await app.who_is(low, high, address=address, timeout=wait)
    found = {}
    for i_am in i_ams:
        host, port = i_am.pduSource.addrTuple
        found[i_am.iAmDeviceIdentifier[1]] = FoundDevice(
            instance=i_am.iAmDeviceIdentifier[1],
            host=host,
            port=port,
            vendor_id=int(i_am.vendorID),
            max_apdu=int(i_am.maxAPDULengthAccepted),
        )
    return sorted(found.values(), key=lambda device: device.instance)


async def read_objects(app: Application, device: FoundDevice) -> FoundObjects:
    """The device's objects of the types the driver supports, with name, description, unit and commandability.

    The others are counted by type in the result's ``skipped`` (the device
    object itself is not: it is the device). A multi-state object's
    ``number-of-states`` comes with it, so its import can limit writes.
    """
    address = Address(device.address)
    device_id = ObjectIdentifier(("device", device.instance))
    try:
        object_list = await app.read_property(address, device_id, "object-list")
    except ErrorRejectAbortNack as exc:
        if stack.is_timeout(exc):
            raise CommunicationError(f"device {device.instance} at {device.address} did not answer") from None
        # too big to send whole without segmentation: read it one entry at a time
        count = await _read(app, address, device_id, "object-list", 0)
        object_list = [await _read(app, address, device_id, "object-list", index) for index in range(1, count + 1)]
    vendor = get_vendor_info(0)
    found = FoundObjects()
    skipped: Counter[str] = Counter()
    for object_id in object_list:
        object_type = str(object_id[0])
        if object_type not in OBJECT_TYPES:
            if object_id != device_id:
                skipped[object_type] += 1
            continue
        kind, data_types = OBJECT_TYPES[object_type]
        properties = ["object-name", "description"]
        if kind == "analog":
            properties.append("units")
        if kind == "multistate":
            properties.append("number-of-states")
        if object_type.endswith("-value"):
            properties.append("relinquish-default")  # present only on commandable values
        values = await _read_many(app, address, object_id, properties, vendor)
        unit = values.get("units")
        found.append(
            FoundObject(
                address=f"{object_type}:{object_id[1]}",
                name=str(values.get("object-name") or f"{object_type}-{object_id[1]}"),
                description=str(values.get("description") or ""),
                unit=UNITS.get(str(unit), str(unit)) if unit is not None else "",
                data_type=data_types[-1] if kind == "multistate" else data_types[0],
                commandable=not object_type.endswith("-input")
                and (object_type.endswith("-output") or "relinquish-default" in values),
                states=_states(values.get("number-of-states")),
            )
        )
    found.skipped = dict(skipped)
    return found


def _states(value: object) -> int | None:
    # numberOfStates is 1 or more (BACnet); anything else is a device bug, and then no limit beats a wrong one
    try:
        states = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return states if states >= 1 else None


def point_name(device_name: str, found: FoundObject, taken: set[str]) -> str:
    """A unique point name ``<device>.<object name>`` with characters the point list accepts."""
    base = f"{device_name}.{NAME_CHARACTERS.sub('_', found.name).strip('_') or found.address.replace(':', '-')}"
    name = base if base not in taken else f"{base}_{found.address.replace(':', '-')}"
    taken.add(name)
    return name[:128]


async def open_endpoint(local_address: str) -> Application:
    """A discovery endpoint on ``local_address``; CommunicationError if it cannot be opened.

    The address is checked and bind-tested first (:func:`check_local_address`),
    so a bind that would fail is reported with the operating system's reason
    at once instead of bacpypes3 retrying it in the background.
    """
    check_local_address(local_address)
    try:
        return await stack.open_application(local_address, stack.DEFAULT_LOCAL_INSTANCE, "bms-discovery")
    except (OSError, ValueError, RuntimeError) as exc:  # EndpointError (not bound in time) among them
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise CommunicationError(f"cannot open a BACnet endpoint on {local_address}: {reason}") from None


async def _read(app: Application, address: Address, object_id: ObjectIdentifier, prop: str, index: int) -> object:
    try:
        return await app.read_property(address, object_id, prop, index)
    except ErrorRejectAbortNack as exc:
        raise CommunicationError(f"{address}: reading {object_id} {prop}[{index}]: {stack.describe(exc)}") from None


async def _read_many(
    app: Application, address: Address, object_id: ObjectIdentifier, properties: list[str], vendor: object
) -> dict[str, object]:
    """Read several properties; a property the object lacks is simply absent from the result."""
    try:
        results = await app.read_property_multiple(address, [object_id, properties], vendor_info=vendor)
    except ErrorRejectAbortNack:
        results = None
    values: dict[str, object] = {}
    if isinstance(results, list):
        for _, property_id, _, value in results:
            if value is not None and type(value).__name__ != "ErrorType":
                values[str(PropertyIdentifier(property_id))] = value
        return values
    for prop in properties:  # no ReadPropertyMultiple: one by one
        try:
            values[prop] = await app.read_property(address, object_id, prop)
        except ErrorRejectAbortNack as exc:
            if stack.is_timeout(exc):
                raise CommunicationError(f"{address} stopped answering while reading {object_id}") from None
    return values
