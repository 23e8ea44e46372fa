"""BACnet/IP driver on bacpypes3: batched reads, prioritised writes, COV subscriptions.

Device: ``host`` and ``port`` are the device's IP address and UDP port
(47808 is BACnet's standard port). Options (``DeviceSpec.options``, all
optional):

``device_instance``          the device object's instance, checked on every connect (see Identity)
``local_address``            our side's ``host[/prefix]:port``; default ``0.0.0.0:0``, an ephemeral port
``local_instance``           the device instance our client announces (default 4194301)
``retries``                  extra attempts per request before the device counts as unreachable (default 1)
``max_objects_per_request``  objects per ReadPropertyMultiple (default 32); refused requests are halved
``write_priority``           priority of writes that carry none (default 16, BACnet's lowest)
``cov``                      subscribe to COV for present-value points (default false)
``cov_lifetime``             subscription lifetime in seconds (default 300), renewed at half of it
``cov_confirmed``            ask for confirmed notifications (default false)

Point addresses and data types: :mod:`drivers.bacnet_address`. The priority
array of a commandable point is not a point: operators read it with
:meth:`BacnetDriver.read_priority_array`.

Reads ask for the point's property and the object's status flags in one
ReadPropertyMultiple per ``max_objects_per_request`` objects (a request the
device refuses as too big is halved, and the smaller size kept); a device
that rejects ReadPropertyMultiple is read with ReadProperty from then on.
Status flags become the reading's quality: out-of-service, then fault →
bad, then overridden → uncertain. A request that gets no answer within the
device timeout makes the whole device unreachable
(:class:`CommunicationError`).

COV: with ``cov`` set, each object whose present value is a point is
subscribed with a finite lifetime. The subscription is renewed in the first
poll after half of the lifetime has passed, so it never lapses while the
device is polled (the poll interval must stay below half the lifetime).
Notifications go straight to the driver's listener (the engine's poller).
Subscribed objects are not read on every poll: each poll still reports
their last notified value (a live subscription means it is current), and
sends at least one small request, so a dead device is noticed within one
poll. Each (re)subscription also reads the object once. A device that
refuses a subscription keeps being polled and is asked again one lifetime
later. After the device was unreachable (a restart, a cable) every
subscription is made anew; a restart shorter than the device timeout is
repaired at the next renewal.

Identity: with ``device_instance`` set, every connect (the first and each
reconnect) asks the device for its own instance (ReadProperty of the
wildcard ``device,4194303``) and refuses a device that answers with another
one (:class:`~drivers.base.WrongDevice` naming both), so after an IP swap the
points show ``comm_failure`` instead of another device's values. A device
that does not resolve the wildcard must have the configured device object.
While connected the check is repeated every :data:`IDENTITY_CHECK_INTERVAL`
seconds, for a device replaced without a silent spell in between.

Local endpoints: the default local address is an ephemeral port, one per
driver. A fixed ``local_address`` (for example ``:47808``) is one endpoint
per process, shared by every driver that names it; a port some other socket
already holds (another BMS process, a commissioning tool, other BACnet
software) is refused, because bacpypes3's ``SO_REUSEPORT`` bind would share
it silently and mix that program's requests and COV cancels with ours. COV
subscriber process identifiers are unique per endpoint and start at a random
22-bit value each time an endpoint opens, so a restarted process does not
reuse its predecessor's identifiers. Commissioning tools use
:func:`commissioning_spec` (an ephemeral port, no COV) so they never touch
the engine's endpoint or its subscriptions. A local address that cannot be
bound is refused at once with the reason (bacpypes3 alone would retry the
bind for ever).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random
import socket
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from bacpypes3.apdu import (
    ConfirmedCOVNotificationRequest,
    ErrorRejectAbortNack,
    SimpleAckPDU,
    SubscribeCOVRequest,
    UnconfirmedCOVNotificationRequest,
)
from bacpypes3.app import Application
from bacpypes3.basetypes import ErrorType, PropertyIdentifier, StatusFlags
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier
from bacpypes3.vendor import VendorInfo, get_vendor_info

from drivers import bacnet_stack as stack
from drivers.bacnet_address import (
    DATA_TYPES,
    PRESENT_VALUE,
    RAW_RANGES,
    BacnetAddress,
    parse_address,
    priority_value_to_raw,
    to_bacnet,
    to_raw,
)
from drivers.base import (
    CommunicationError,
    DeviceSpec,
    Driver,
    PointError,
    PointSpec,
    RawValue,
    Reading,
    WrongDevice,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_OBJECTS = 32
DEFAULT_COV_LIFETIME = 300
DEFAULT_RETRIES = 1
#: seconds between identity checks while connected: a device replaced at the address without a silent spell in
#: between (an identical controller, an address moved at once) shows as comm_failure within this, not as good
IDENTITY_CHECK_INTERVAL = 60.0
STATUS_FLAGS = PropertyIdentifier("status-flags")
OBJECT_NAME = PropertyIdentifier("object-name")
OBJECT_IDENTIFIER = PropertyIdentifier("object-identifier")
PRIORITY_ARRAY = PropertyIdentifier("priority-array")
RELINQUISH_DEFAULT = PropertyIdentifier("relinquish-default")
# Answers meaning "this device does not do ReadPropertyMultiple" (as opposed to "this request is too big").
RPM_UNSUPPORTED = {"unrecognized-service", "service-request-denied", "optional-functionality-not-supported"}
TOO_BIG = {"segmentation-not-supported", "buffer-overflow", "apdu-too-long", "response-too-large"}


def quality_of(flags: Any) -> str | None:
    """Map BACnet status flags to a quality hint (None = good); out-of-service wins over fault."""
    if not isinstance(flags, StatusFlags):
        return None
    if flags[StatusFlags.outOfService]:
        return "out_of_service"
    if flags[StatusFlags.fault]:
        return "bad"
    if flags[StatusFlags.overridden]:
        return "uncertain"
    return None


@dataclass(frozen=True, slots=True)
class PriorityArray:
    """A commandable property's 16 priority slots (index 0 = priority 1) and its relinquish default."""

    slots: tuple[RawValue | None, ...]
    relinquish_default: RawValue | None

    @property
    def active_priority(self) -> int | None:
        """The priority in control (1..16), or None when every slot is relinquished."""
        for index, value in enumerate(self.slots):
            if value is not None:
                return index + 1
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "priority_array": {str(index + 1): value for index, value in enumerate(self.slots)},
            "active_priority": self.active_priority,
            "relinquish_default": self.relinquish_default,
        }


@dataclass(slots=True)
class Subscription:
    """One COV subscription of ours on one object of the device."""

    object_id: ObjectIdentifier
    process_id: int
    points: list[tuple[PointSpec, BacnetAddress]]
    active: bool = False
    renew_at: float = 0.0  # loop time; 0 = subscribe at the next poll
    refused: str | None = None
    subscribed: int = field(default=0)  # successful SubscribeCOV requests, for tests and diagnostics


class _ClientApplication(Application):
    """Our bacpypes3 application: routes COV notifications to the drivers using it (each keeps only its own)."""

    endpoint: _Endpoint | None = None

    def _route(self, apdu: ConfirmedCOVNotificationRequest | UnconfirmedCOVNotificationRequest) -> None:
        if self.endpoint is not None:
            # Process identifiers are unique per endpoint, so exactly one driver takes a notification.
            for driver in list(self.endpoint.users):
                driver._notification(apdu)

    async def do_UnconfirmedCOVNotificationRequest(self, apdu: UnconfirmedCOVNotificationRequest) -> None:
        self._route(apdu)

    async def do_ConfirmedCOVNotificationRequest(self, apdu: ConfirmedCOVNotificationRequest) -> None:
        self._route(apdu)
        # Acknowledge even an unknown subscription: the device would otherwise retry it.
        await self.response(SimpleAckPDU(context=apdu))


class _Endpoint:
    """One bacpypes3 application (one UDP socket) and the drivers using it.

    An ephemeral endpoint belongs to one driver; a fixed local address has at
    most one endpoint per process, shared (``key`` set, listed in ``_SHARED``).
    It hands out COV subscriber process identifiers: unique among its drivers,
    starting at a random 22-bit value so that two starts (or two processes
    that somehow share the address) do not pick the same identifiers.
    """

    def __init__(self, app: _ClientApplication, key: tuple[str, int] | None) -> None:
        self.app = app
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.users: set[BacnetDriver] = set()
        self._process_ids = itertools.count(random.randrange(1, 1 << 22))
        app.endpoint = self

    def next_process_id(self) -> int:
        return next(self._process_ids)


#: the shared endpoints of fixed local addresses in this process, by bound (host, port)
_SHARED: dict[tuple[str, int], _Endpoint] = {}
# one opening at a time per event loop: two pollers connecting at once must not both bind the address
_OPEN_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _open_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _OPEN_LOCKS.get(loop)
    if lock is None:
        lock = _OPEN_LOCKS[loop] = asyncio.Lock()
    return lock


def commissioning_spec(spec: DeviceSpec) -> DeviceSpec:
    """``spec`` for a commissioning tool: the device's interface on an ephemeral port, and no COV.

    A tool (``poll --once``, ``bacnet priority``, the priority-array API) must
    never bind the engine's fixed port: it would share it silently and its
    COV cancels and requests would look like the engine's. Nor does it
    subscribe: it reads once, and a subscription of its own would only take
    a slot in the device's subscription table (small on many controllers,
    and left taken for a lifetime if the tool dies before cancelling).
    """
    options = {**spec.options, "cov": False}
    local = str(spec.options.get("local_address") or stack.DEFAULT_LOCAL_ADDRESS)
    try:
        options["local_address"] = stack.ephemeral_address(local)
    except stack.EndpointError:
        pass  # a malformed address is reported by connect(), in one line
    return dataclasses.replace(spec, options=options)


class BacnetDriver(Driver):
    """BACnet/IP client for one device: its own ephemeral UDP endpoint, or the process's one for a fixed address."""

    name = "bacnet"
    relinquish = True
    data_types = DATA_TYPES

    def __init__(self, device: DeviceSpec) -> None:
        super().__init__(device)
        options = device.options
        instance = options.get("device_instance")
        self.device_instance: int | None = None if instance in (None, "") else int(instance)
        self.local_address = str(options.get("local_address") or stack.DEFAULT_LOCAL_ADDRESS)
        self.retries = int(options.get("retries", DEFAULT_RETRIES))
        self.max_objects = max(1, int(options.get("max_objects_per_request", DEFAULT_MAX_OBJECTS)))
        self.write_priority = int(options.get("write_priority", 16))
        self.cov_enabled = bool(options.get("cov", False))
        self.cov_lifetime = max(1, int(options.get("cov_lifetime", DEFAULT_COV_LIFETIME)))
        self.cov_confirmed = bool(options.get("cov_confirmed", False))
        self._app: _ClientApplication | None = None
        self._endpoint: _Endpoint | None = None
        self._address: Address | None = None
        self._online = False
        self._vendor: VendorInfo = get_vendor_info(0)  # ASHRAE's standard object types
        self._rpm_supported = True
        self._plan_points: Sequence[PointSpec] | None = None
        self._parsed: dict[str, BacnetAddress] = {}
        self._subscriptions: dict[ObjectIdentifier, Subscription] = {}
        self._by_process: dict[int, Subscription] = {}
        self._cov_values: dict[str, Reading] = {}
        #: requests sent by the last read(), for tests and the benchmark
        self.requests_last_read = 0
        self.identity_check_interval = IDENTITY_CHECK_INTERVAL
        self._identity_due = 0.0  # loop time of the next identity check while connected

    # -- contract -----------------------------------------------------------------

    @classmethod
    def validate_point(cls, address: str, data_type: str) -> None:
        parse_address(address, data_type)

    @classmethod
    def value_range(cls, data_type: str) -> tuple[float, float] | None:
        return RAW_RANGES.get(data_type)

    @property
    def connected(self) -> bool:
        return self._app is not None and self._online

    @property
    def _where(self) -> str:
        return f"{self.device.host}:{self.device.port}"

    async def connect(self) -> None:
        """Open our UDP endpoint (once), check that the device answers and is the configured instance.

        Subscriptions start over. A refused endpoint or a wrong device is a
        :class:`CommunicationError` (the engine shows ``comm_failure``).
        """
        if self._app is None:
            self._address = await self._resolve()
            endpoint = await self._acquire_endpoint()
            self._endpoint = endpoint
            self._app = endpoint.app
            # Identifiers come from this endpoint: unique among its drivers and new for each start.
            self._by_process.clear()
            for subscription in self._subscriptions.values():
                subscription.process_id = endpoint.next_process_id()
                self._by_process[subscription.process_id] = subscription
        self._online = True
        try:
            await self._verify_instance()
        except CommunicationError:
            self._online = False
            raise
        self._identity_due = asyncio.get_running_loop().time() + self.identity_check_interval
        self._cov_values.clear()
        for subscription in self._subscriptions.values():
            subscription.active = False
            subscription.renew_at = 0.0

    async def _resolve(self) -> Address:
        host = self.device.host
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, self.device.port, family=socket.AF_INET)
        except OSError as exc:
            raise CommunicationError(f"cannot resolve BACnet device host {host!r}: {exc}") from exc
        return Address(f"{infos[0][4][0]}:{self.device.port}")

    async def _acquire_endpoint(self) -> _Endpoint:
        """Our endpoint: a new one for an ephemeral port; the process's one for a fixed address, if free.

        Every socket is bind-tested first (:func:`~drivers.bacnet_stack.check_local_address`), so an
        address that is not on this host, a port out of range or a port another program holds is one
        clear line at once; bacpypes3 alone would retry the bind for ever.
        """
        try:
            key = stack.local_endpoint(self.local_address)
            if key[1] == 0:
                stack.check_local_address(self.local_address)
                endpoint = _Endpoint(await self._open_application(), None)
                endpoint.users.add(self)
                return endpoint
            async with _open_lock():
                endpoint = _SHARED.get(key)
                if endpoint is not None and endpoint.loop is not asyncio.get_running_loop():
                    raise stack.EndpointError(
                        f"UDP {key[0]}:{key[1]} is already used by another event loop of this process"
                    )
                if endpoint is None:
                    await self._check_free()
                    endpoint = _Endpoint(await self._open_application(), key)
                    _SHARED[key] = endpoint
                elif endpoint.users:
                    log.info(
                        "device %s shares the BACnet endpoint %s:%d (timeout and retries of the first device using it)",
                        self.device.name,
                        *key,
                    )
                endpoint.users.add(self)
                return endpoint
        except stack.EndpointError as exc:
            raise CommunicationError(f"cannot open a BACnet endpoint on {self.local_address}: {exc}") from None

    async def _check_free(self) -> None:
        """Bind-test a fixed local address; a socket closed a moment ago (a reconfigured device) gets a moment."""
        for attempt in range(3):
            try:
                stack.check_local_address(self.local_address)
                return
            except stack.PortInUse:
                if attempt == 2:
                    raise
                # the kernel releases a closed socket's port one loop step after transport.close()
                await asyncio.sleep(0.05)

    async def _open_application(self) -> _ClientApplication:
        try:
            app = await stack.open_application(
                self.local_address,
                int(self.device.options.get("local_instance", stack.DEFAULT_LOCAL_INSTANCE)),
                f"bms-{self.device.name}"[:64],
                request_timeout=self.device.timeout,
                retries=self.retries,
                app_class=_ClientApplication,
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise stack.EndpointError(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__) from None
        assert isinstance(app, _ClientApplication)
        return app

    def _release_endpoint(self) -> None:
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is None:
            return
        endpoint.users.discard(self)
        if endpoint.users:
            return  # other devices still use this shared endpoint
        if endpoint.key is not None and _SHARED.get(endpoint.key) is endpoint:
            del _SHARED[endpoint.key]
        endpoint.app.endpoint = None
        stack.close_application(endpoint.app)

    async def close(self) -> None:
        app, self._app = self._app, None
        self._online = False
        if app is None:
            return
        active = [s for s in self._subscriptions.values() if s.active]
        for subscription in active:
            subscription.active = False
        for subscription in active:
            # Cancel politely so the device stops sending. bacpypes3 ends the request itself (no response
            # after the timeout and retries); cancelling its future first made it log a traceback per request.
            request = SubscribeCOVRequest(
                subscriberProcessIdentifier=subscription.process_id,
                monitoredObjectIdentifier=subscription.object_id,
                destination=self._address,
            )
            try:
                await app.request(request)
            except (ErrorRejectAbortNack, OSError) as exc:
                log.debug("device %s: COV cancel of %s: %s", self.device.name, subscription.object_id, exc)
                if isinstance(exc, OSError) or stack.is_timeout(exc):
                    break  # a dead device costs one timeout, not one per object; its subscriptions lapse
        self._release_endpoint()

    async def read(self, points: Sequence[PointSpec]) -> dict[str, Reading]:
        readings: dict[str, Reading] = {}
        async for batch in self.read_iter(points):
            readings.update(batch)
        return readings

    async def read_iter(self, points: Sequence[PointSpec]) -> AsyncIterator[dict[str, Reading]]:
        self._require_online()
        self.requests_last_read = 0
        if self.device_instance is not None:
            now = asyncio.get_running_loop().time()
            if now >= self._identity_due:
                self._identity_due = now + self.identity_check_interval
                await self._verify_instance()
        parsed = self._parse(points)
        refresh: set[ObjectIdentifier] = set()
        if self.cov_enabled:
            refresh = await self._maintain_subscriptions(points, parsed)
        polled: list[tuple[PointSpec, BacnetAddress]] = []
        pushed: dict[str, Reading] = {}
        for point in points:
            address = parsed[point.name]
            cached = self._cov_values.get(point.name)
            if self._served_by_cov(address) and address.object_id not in refresh and cached is not None:
                pushed[point.name] = cached
            else:
                polled.append((point, address))
        if not polled:
            await self._probe()
        elif self._rpm_supported:
            async for batch in self._read_multiple(polled):
                self._remember(batch, parsed)
                yield batch
        else:
            for point, address in polled:
                batch = {point.name: await self._read_single(point, address)}
                self._remember(batch, parsed)
                yield batch
        if pushed:
            # The device is alive and the subscription stands, so the last notified value is current:
            # report it, as every poll cycle must account for every point.
            yield pushed

    async def write(self, point: PointSpec, value: RawValue | None, priority: int | None = None) -> None:
        """Write ``value`` at ``priority`` (1..16, default ``write_priority``); ``None`` relinquishes that slot."""
        address = parse_address(point.address, point.data_type)
        if priority is None:
            priority = self.write_priority
        if not 1 <= int(priority) <= 16:
            raise PointError(f"{point.name}: BACnet priority must be 1..16, not {priority}")
        app = self._require_online()
        try:
            await app.write_property(
                self._address, address.object_id, address.property_id, to_bacnet(address, value), priority=priority
            )
        except ErrorRejectAbortNack as exc:
            self._raise_for(exc, f"{point.name}: device refused the write")

    async def read_priority_array(self, point: PointSpec) -> PriorityArray:
        """The priority array and relinquish default of a commandable point, for operators."""
        address = parse_address(point.address, point.data_type)
        app = self._require_online()
        try:
            slots = await app.read_property(self._address, address.object_id, PRIORITY_ARRAY)
            default = await app.read_property(self._address, address.object_id, RELINQUISH_DEFAULT)
        except ErrorRejectAbortNack as exc:
            self._raise_for(exc, f"{point.name}: {address.object_type}:{address.instance} has no priority array")
        try:
            values = tuple(priority_value_to_raw(slot, address.kind) for slot in slots)
            return PriorityArray(values, to_raw(default, address.kind))
        except (TypeError, ValueError) as exc:
            raise PointError(f"{point.name}: unexpected priority array {slots!r}: {exc}") from exc

    def _remember(self, batch: dict[str, Reading], parsed: dict[str, BacnetAddress]) -> None:
        """Keep polled values of subscribed objects as their current value until the next notification."""
        if self._subscriptions:
            for name, reading in batch.items():
                if self._served_by_cov(parsed[name]):
                    self._cov_values[name] = reading

    # -- reading --------------------------------------------------------------------

    def _parse(self, points: Sequence[PointSpec]) -> dict[str, BacnetAddress]:
        # The engine passes the same list every poll: parse once per list.
        if points is not self._plan_points:
            self._parsed = {point.name: parse_address(point.address, point.data_type) for point in points}
            self._plan_points = points
        return self._parsed

    async def _read_multiple(self, polled: list[tuple[PointSpec, BacnetAddress]]) -> AsyncIterator[dict[str, Reading]]:
        by_object: dict[ObjectIdentifier, list[tuple[PointSpec, BacnetAddress]]] = {}
        for point, address in polled:
            by_object.setdefault(address.object_id, []).append((point, address))
        objects = list(by_object.items())
        pending = [objects[i : i + self.max_objects] for i in range(0, len(objects), self.max_objects)]
        while pending:
            chunk = pending.pop(0)
            try:
                results = await self._rpm(chunk)
            except ErrorRejectAbortNack as exc:
                code = stack.error_code(exc)
                if stack.is_timeout(exc):
                    self._lost(exc)
                if code in TOO_BIG and len(chunk) > 1:
                    # Halve this request and keep the smaller size for later polls.
                    half = len(chunk) // 2
                    self.max_objects = max(1, half)
                    pending[:0] = [chunk[:half], chunk[half:]]
                    continue
                if code in RPM_UNSUPPORTED:
                    log.info("device %s does not support ReadPropertyMultiple; using ReadProperty", self.device.name)
                    self._rpm_supported = False
                    entries = [entry for _, group in chunk + [e for c in pending for e in c] for entry in group]
                    pending.clear()
                    for point, address in entries:
                        yield {point.name: await self._read_single(point, address)}
                    return
                message = f"device refused the read: {stack.describe(exc)}"
                yield {point.name: Reading(None, message) for _, group in chunk for point, _ in group}
                continue
            yield self._decode(chunk, results)

    async def _rpm(self, chunk: list[tuple[ObjectIdentifier, list[tuple[PointSpec, BacnetAddress]]]]) -> list:
        app = self._require_online()
        parameters: list[Any] = []
        for object_id, group in chunk:
            properties = list(dict.fromkeys([address.property_id for _, address in group] + [STATUS_FLAGS]))
            parameters.extend([object_id, properties])
        self.requests_last_read += 1
        result = await app.read_property_multiple(self._address, parameters, vendor_info=self._vendor)
        if not isinstance(result, list):
            raise CommunicationError(f"{self._where}: unexpected ReadPropertyMultiple answer {result!r}")
        return result

    def _decode(self, chunk: list, results: list) -> dict[str, Reading]:
        values: dict[tuple[Any, Any], Any] = {}
        for object_id, property_id, _index, value in results:
            values[(object_id, property_id)] = value
        readings: dict[str, Reading] = {}
        for object_id, group in chunk:
            quality = quality_of(values.get((object_id, STATUS_FLAGS)))
            for point, address in group:
                value = values.get((object_id, address.property_id), _MISSING)
                readings[point.name] = self._reading(point, address, value, quality)
        return readings

    def _reading(self, point: PointSpec, address: BacnetAddress, value: Any, quality: str | None) -> Reading:
        if value is _MISSING:
            return Reading(None, f"the device did not return {address}")
        if isinstance(value, ErrorType):
            return Reading(None, f"{address}: {value.errorClass}: {value.errorCode}")
        try:
            raw = to_raw(value, address.kind if address.property_name == PRESENT_VALUE else None)
        except ValueError as exc:
            return Reading(None, f"{address}: {exc}")
        if raw is None:
            return Reading(None, f"{address} is null")
        return Reading(raw, quality=quality)

    async def _read_single(self, point: PointSpec, address: BacnetAddress) -> Reading:
        app = self._require_online()
        try:
            self.requests_last_read += 1
            value = await app.read_property(self._address, address.object_id, address.property_id)
        except ErrorRejectAbortNack as exc:
            if stack.is_timeout(exc):
                self._lost(exc)
            return Reading(None, f"{address}: {stack.describe(exc)}")
        quality = None
        try:
            self.requests_last_read += 1
            quality = quality_of(await app.read_property(self._address, address.object_id, STATUS_FLAGS))
        except ErrorRejectAbortNack as exc:
            if stack.is_timeout(exc):
                self._lost(exc)
            # An object without status flags is still read; only its quality is unknown to the device.
        return self._reading(point, address, value, quality)

    async def _probe(self) -> None:
        """One small request that any live device answers (an error answer proves life too)."""
        app = self._require_online()
        instance = self.device_instance if self.device_instance is not None else stack.WILDCARD_INSTANCE
        self.requests_last_read += 1
        try:
            await app.read_property(self._address, ObjectIdentifier(("device", instance)), OBJECT_NAME)
        except ErrorRejectAbortNack as exc:
            if stack.is_timeout(exc):
                self._lost(exc)
            if self.device_instance is not None and stack.error_code(exc) == "unknown-object":
                # The configured device object is gone from this address: find out who answers instead.
                await self._verify_instance(missing=stack.describe(exc))

    async def _verify_instance(self, missing: str | None = None) -> None:
        """Check that the device at our address is ``device_instance`` (just prove life when none is set).

        Real devices resolve the wildcard ``device,4194303`` to their own
        object; others (bacpypes3 0.0.110 among them) must have the configured
        device object, and if they have not, a directed Who-Is names the
        instance that does answer. ``missing``: the probe already found the
        configured device object gone (its error).
        """
        configured = self.device_instance
        if configured is None:
            await self._probe()
            return
        app = self._require_online()
        actual: int | None = None
        try:
            answered = await app.read_property(
                self._address, ObjectIdentifier(("device", stack.WILDCARD_INSTANCE)), OBJECT_IDENTIFIER
            )
            actual = int(answered[1])
        except ErrorRejectAbortNack as exc:
            if stack.is_timeout(exc):
                self._lost(exc)
            if missing is None:
                try:
                    await app.read_property(self._address, ObjectIdentifier(("device", configured)), OBJECT_NAME)
                    return  # the configured device object is there
                except ErrorRejectAbortNack as refused:
                    if stack.is_timeout(refused):
                        self._lost(refused)
                    if stack.error_code(refused) != "unknown-object":
                        return  # an answer, if an odd one, about our device object: as the probe, count it as life
                    missing = stack.describe(refused)
            actual = await self._instance_by_who_is()
            if actual is None:
                self._wrong_device(f"has no device object {configured} ({missing})")
        except (TypeError, ValueError, IndexError):
            self._wrong_device(f"answered {answered!r} for its device object identifier")
        if actual != configured:
            self._wrong_device(f"is device instance {actual}")

    async def _instance_by_who_is(self) -> int | None:
        """The instance in the I-Am the device sends to a directed Who-Is within the timeout, if any."""
        app = self._require_online()
        try:
            answers = await app.who_is(address=self._address, timeout=self.device.timeout)
        except (ErrorRejectAbortNack, OSError, ValueError) as exc:
            log.debug("device %s: directed Who-Is failed: %s", self.device.name, exc)
            return None
        for answer in answers or ():
            if answer.pduSource == self._address:
                return int(answer.iAmDeviceIdentifier[1])
        return None

    def _wrong_device(self, what: str) -> NoReturn:
        self._online = False
        self._cov_values.clear()
        for subscription in self._subscriptions.values():
            subscription.active = False
        raise WrongDevice(
            f"BACnet device at {self._where} {what}, not the configured device instance {self.device_instance}"
        )

    # -- COV ------------------------------------------------------------------------

    def _served_by_cov(self, address: BacnetAddress) -> bool:
        if not self.cov_enabled or address.property_name != PRESENT_VALUE:
            return False
        subscription = self._subscriptions.get(address.object_id)
        return subscription is not None and subscription.active

    async def _maintain_subscriptions(
        self, points: Sequence[PointSpec], parsed: dict[str, BacnetAddress]
    ) -> set[ObjectIdentifier]:
        """Subscribe new objects and renew those due; return the objects (re)subscribed this time."""
        wanted: dict[ObjectIdentifier, list[tuple[PointSpec, BacnetAddress]]] = {}
        for point in points:
            address = parsed[point.name]
            if address.property_name == PRESENT_VALUE:
                wanted.setdefault(address.object_id, []).append((point, address))
        for object_id in list(self._subscriptions):
            if object_id not in wanted:
                self._by_process.pop(self._subscriptions.pop(object_id).process_id, None)
        now = asyncio.get_running_loop().time()
        refreshed: set[ObjectIdentifier] = set()
        for object_id, group in wanted.items():
            subscription = self._subscriptions.get(object_id)
            if subscription is None:
                assert self._endpoint is not None  # online implies an endpoint
                subscription = Subscription(object_id, self._endpoint.next_process_id(), group)
                self._subscriptions[object_id] = subscription
                self._by_process[subscription.process_id] = subscription
            subscription.points = group
            if now >= subscription.renew_at:
                await self._subscribe(subscription, now)
                if subscription.active:
                    refreshed.add(object_id)
        return refreshed

    async def _subscribe(self, subscription: Subscription, now: float) -> None:
        app = self._require_online()
        request = SubscribeCOVRequest(
            subscriberProcessIdentifier=subscription.process_id,
            monitoredObjectIdentifier=subscription.object_id,
            issueConfirmedNotifications=self.cov_confirmed,
            lifetime=self.cov_lifetime,
            destination=self._address,
        )
        self.requests_last_read += 1
        try:
            await app.request(request)
        except ErrorRejectAbortNack as exc:
            if stack.is_timeout(exc):
                subscription.active = False
                self._lost(exc)
            reason = stack.describe(exc)
            if subscription.refused != reason:
                log.warning(
                    "device %s refused COV on %s (%s); polling it instead",
                    self.device.name,
                    subscription.object_id,
                    reason,
                )
            subscription.active = False
            for point, _ in subscription.points:
                self._cov_values.pop(point.name, None)
            subscription.refused = reason
            subscription.renew_at = now + self.cov_lifetime  # ask again later: the device may have been busy
            return
        subscription.active = True
        subscription.refused = None
        subscription.subscribed += 1
        subscription.renew_at = now + self.cov_lifetime / 2

    def _notification(self, apdu: ConfirmedCOVNotificationRequest | UnconfirmedCOVNotificationRequest) -> None:
        subscription = self._by_process.get(apdu.subscriberProcessIdentifier)
        if (
            subscription is None
            or not subscription.active
            or apdu.pduSource != self._address
            or apdu.monitoredObjectIdentifier != subscription.object_id
        ):
            return  # a late notification of a subscription we dropped
        object_class = self._vendor.get_object_class(subscription.object_id[0])
        values: dict[Any, Any] = {}
        for element in apdu.listOfValues:
            property_type = object_class.get_property_type(element.propertyIdentifier) if object_class else None
            if property_type is None:
                continue
            try:
                values[element.propertyIdentifier] = element.value.cast_out(property_type)
            except Exception as exc:  # a malformed notification must not kill the receive path
                log.warning("device %s: undecodable COV value %s: %s", self.device.name, element, exc)
        if PropertyIdentifier(PRESENT_VALUE) not in values:
            return
        quality = quality_of(values.get(STATUS_FLAGS))
        readings = {
            point.name: self._reading(point, address, values[address.property_id], quality)
            for point, address in subscription.points
        }
        self._cov_values.update(readings)
        if self.listener is not None:
            self.listener(readings)

    def subscription_state(self) -> dict[str, dict[str, Any]]:
        """Per subscribed object: active, refusal reason, successful subscribe count and subscriber process id."""
        return {
            f"{s.object_id[0]}:{s.object_id[1]}": {
                "active": s.active,
                "refused": s.refused,
                "subscribed": s.subscribed,
                "process_id": s.process_id,
            }
            for s in self._subscriptions.values()
        }

    # -- errors ---------------------------------------------------------------------

    def _require_online(self) -> _ClientApplication:
        if self._app is None or not self._online:
            raise CommunicationError(f"not connected to BACnet device {self._where}")
        return self._app

    def _lost(self, exc: BaseException) -> NoReturn:
        self._online = False
        self._cov_values.clear()
        for subscription in self._subscriptions.values():
            subscription.active = False
        raise CommunicationError(f"BACnet device {self._where} did not answer: {stack.describe(exc)}") from None

    def _raise_for(self, exc: BaseException, context: str) -> NoReturn:
        if stack.is_timeout(exc):
            self._lost(exc)
        raise PointError(f"{context}: {stack.describe(exc)}") from None


_MISSING = object()
