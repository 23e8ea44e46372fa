"""Small helpers around bacpypes3 shared by the BACnet driver, discovery and the simulated device.

bacpypes3 builds an application from command-line style arguments and binds
its UDP socket in a background task; these helpers hide that, bind to an
ephemeral port by default, give requests the device's timeout, and turn
bacpypes3's error PDUs (which derive from ``BaseException``) into messages.

Loopback gotcha (bacpypes3 0.0.110): a unicast to any ``127.x.x.x`` address
on an application's *own* UDP port is looped back internally and never
reaches the socket, so on one host every BACnet application needs its own
port. An ephemeral local port (the default here) never collides.

Fixed local ports: bacpypes3 binds with ``SO_REUSEPORT``, so a second
application (another process, or a tool in this one) on the same fixed port
binds without error and then shares the engine's source address: its COV
cancels and its requests are indistinguishable from the engine's, and it can
steal the engine's replies. :func:`check_local_address` bind-tests every
socket bacpypes3 would bind for a local address before it does, so a port any
socket already holds is refused (:class:`PortInUse`), and an address that is
not on this host is reported at once with the system's reason (bacpypes3
itself retries a failed bind for ever in the background).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket

from bacpypes3.apdu import AbortPDU, AbortReason, ErrorPDU, ErrorRejectAbortNack, RejectPDU
from bacpypes3.app import Application
from bacpypes3.argparse import SimpleArgumentParser
from bacpypes3.ipv4 import IPv4DatagramServer
from bacpypes3.pdu import Address, IPv4Address

#: the local address a client binds when the device options name none: every interface, any free port
DEFAULT_LOCAL_ADDRESS = "0.0.0.0:0"
#: BACnet's highest valid device instance (4194303 is the "any device" wildcard)
MAX_DEVICE_INSTANCE = 4194302
#: the device instance our own client applications announce; they never answer Who-Is on an ephemeral port
DEFAULT_LOCAL_INSTANCE = 4194301
#: the device instance that any device resolves to its own (ReadProperty of ``device,4194303``)
WILDCARD_INSTANCE = 4194303
# applications being closed in the background (a reference keeps their task alive)
_DISCARDING: set[asyncio.Task] = set()


def make_application(
    local_address: str,
    instance: int,
    name: str,
    timeout: float | None = None,
    retries: int | None = None,
    app_class: type[Application] = Application,
) -> Application:
    """Create a bacpypes3 application bound to ``local_address`` (``host[/prefix]:port``).

    Must run inside the event loop. ``timeout`` (seconds) and ``retries``
    set how long a confirmed request waits for an answer before it fails
    with an ``AbortPDU`` whose reason is ``no-response``.
    """
    args = SimpleArgumentParser().parse_args(["--address", local_address, "--instance", str(instance), "--name", name])
    app = app_class.from_args(args)
    if timeout is not None:
        app.device_object.apduTimeout = max(1, round(timeout * 1000))
    if retries is not None:
        app.device_object.numberOfApduRetries = max(0, retries)
    return app


def _datagram_servers(app: Application) -> list[IPv4DatagramServer]:
    servers = (getattr(link, "server", None) for link in app.link_layers.values())
    return [server for server in servers if isinstance(server, IPv4DatagramServer)]


async def bound_port(app: Application) -> int:
    """The UDP port ``app`` actually listens on (resolves an ephemeral ``:0``)."""
    for server in _datagram_servers(app):
        if server._transport_tasks:
            # asyncio.wait, not gather: a cancelled caller must not cancel the socket's creation
            # (bacpypes3's completion callback would log the cancellation as an error).
            await asyncio.wait(server._transport_tasks)
        await server._local_transport_ready.wait()
        return int(server.local_transport.get_extra_info("sockname")[1])
    raise RuntimeError("the BACnet application has no IPv4 link layer")


async def open_application(
    local_address: str,
    instance: int,
    name: str,
    request_timeout: float | None = None,
    retries: int | None = None,
    app_class: type[Application] = Application,
    bind_within: float = 5.0,
) -> Application:
    """:func:`make_application`, then wait until its socket is bound; never leaves a socket behind.

    bacpypes3 retries a failed bind forever in the background, so a wrong
    ``local_address`` would otherwise only show as silence: not bound within
    ``bind_within`` seconds is an :class:`EndpointError`. Callers bind-test
    first (:func:`check_local_address`), which names the reason at once.
    """
    app = make_application(local_address, instance, name, request_timeout, retries, app_class)
    try:
        await asyncio.wait_for(bound_port(app), bind_within)
    except BaseException as exc:
        task = asyncio.ensure_future(_discard(app))
        _DISCARDING.add(task)
        task.add_done_callback(_DISCARDING.discard)
        if isinstance(exc, TimeoutError):
            # passed the bind test, then still not bound: lost a race for the port, or the interface went away
            raise EndpointError(f"not bound within {bind_within:g} s") from None
        raise
    return app


async def _discard(app: Application) -> None:
    """Close an application whose socket may still be being created (let that finish first, briefly)."""
    tasks = [task for server in _datagram_servers(app) for task in server._transport_tasks]
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=1.0)
        for task in pending:
            task.cancel()
    close_application(app)


class EndpointError(OSError):
    """Our local BACnet endpoint cannot be opened; the message is the reason, in one line."""


class PortInUse(EndpointError):
    """A fixed local UDP port is already bound by some other socket (this process or another)."""


def endpoint_sockets(local_address: str) -> tuple[tuple[str, int], ...]:
    """The UDP ``(host, port)`` pairs bacpypes3 binds for ``local_address`` (``host[/prefix]:port``).

    The first is the unicast socket (port 0 = ephemeral); a fixed port with a
    network prefix also has a broadcast socket on Linux, to hear broadcast
    Who-Is and I-Am. :class:`EndpointError` if the text is no IPv4 address.
    """
    try:
        address = Address(local_address)
    except (ValueError, RuntimeError) as exc:  # RuntimeError: a host name bacpypes3 cannot resolve
        raise EndpointError(f"{local_address!r} is not an IPv4 ADDR[/PREFIX]:PORT ({exc})") from None
    if not isinstance(address, IPv4Address):
        raise EndpointError(f"{local_address!r} is not an IPv4 ADDR[/PREFIX]:PORT (it is a {type(address).__name__})")
    unicast = (str(address.addrTuple[0]), int(address.addrTuple[1]))
    broadcast = (str(address.addrBroadcastTuple[0]), int(address.addrBroadcastTuple[1]))
    if unicast[1] == 0 or broadcast == unicast or os.name == "nt":
        return (unicast,)
    return unicast, broadcast


def local_endpoint(local_address: str) -> tuple[str, int]:
    """The ``(host, port)`` our socket binds for ``local_address`` (``host[/prefix]:port``); port 0 = ephemeral."""
    return endpoint_sockets(local_address)[0]


def ephemeral_address(local_address: str) -> str:
    """``local_address`` on the same interface but an ephemeral port (and no broadcast socket)."""
    host, _ = local_endpoint(local_address)
    return f"{host}:0"


def probe_bind(host: str, port: int) -> None:
    """Bind a throwaway UDP socket to ``(host, port)`` as bacpypes3 would, but without ``SO_REUSEPORT``.

    Raises the ``OSError`` of the bind: an address not on this host, a
    privileged port, or (``EADDRINUSE``) a port any other socket holds,
    which bacpypes3 itself would silently share.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        probe.bind((host, port))


def check_local_address(local_address: str) -> tuple[tuple[str, int], ...]:
    """Bind-test every socket bacpypes3 would bind for ``local_address``; return them, or raise the reason.

    :class:`PortInUse` when another socket holds a fixed port (the unicast
    one: a shared broadcast socket loses nothing), else
    :class:`EndpointError` (not an address of this host, a port out of
    range, malformed text). The probe binds *without* ``SO_REUSEPORT``: the
    kernel then refuses it whenever any socket holds the port on that
    address or the wildcard, whatever that socket's options (bacpypes3's own
    bind would succeed). An ephemeral port is probed too: that checks the
    address. Another process can still take a port between this check and
    the bind; the window is one event-loop step.
    """
    sockets = endpoint_sockets(local_address)
    for host, port in sockets:
        try:
            probe_bind(host, port)
        except OverflowError:
            raise EndpointError(f"UDP port {port} is out of range (0..65535)") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.errno == errno.EADDRINUSE and (host, port) != sockets[0]:
                # Sharing a broadcast socket is harmless: the kernel gives every socket bound to it a copy of
                # each broadcast (unicast datagrams go to one of the sharers: those would be stolen).
                continue
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"binding UDP {host}:{port}: {reason}: another BACnet endpoint holds it (another BMS process, a "
                    "commissioning tool or other BACnet software); sharing it would mix that program's requests "
                    "and COV subscriptions with ours, so it is refused"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                reason += f" ({host} is not an address of this host)"
            raise EndpointError(f"binding UDP {host}:{port}: {reason}") from None
    return sockets


def close_application(app: Application | None) -> None:
    """Close an application's sockets; safe to call twice."""
    if app is None:
        return
    with contextlib.suppress(Exception):
        app.close()


def parse_address(text: str) -> Address:
    """A device address ``host:port`` (or ``host``, port 47808) as a bacpypes3 Address."""
    return Address(text)


def is_timeout(error: BaseException) -> bool:
    """True if the device did not answer at all (our side gave up waiting)."""
    return isinstance(error, AbortPDU) and error.apduAbortRejectReason == AbortReason.noResponse


def describe(error: BaseException) -> str:
    """An operator-readable text for a BACnet error, reject or abort."""
    if isinstance(error, ErrorPDU):
        return f"error {error.errorClass}: {error.errorCode}"
    if isinstance(error, RejectPDU):
        return f"rejected: {error.apduAbortRejectReason}"
    if isinstance(error, AbortPDU):
        if is_timeout(error):
            return "no response"
        return f"aborted: {error.apduAbortRejectReason}"
    if isinstance(error, ErrorRejectAbortNack):
        return str(error)
    return f"{type(error).__name__}: {error}"


def error_code(error: BaseException) -> str:
    """The BACnet error code (``unknown-object``), reject or abort reason as text, for decisions."""
    if isinstance(error, ErrorPDU):
        return str(error.errorCode)
    if isinstance(error, (RejectPDU, AbortPDU)):
        return str(error.apduAbortRejectReason)
    return ""
