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
steal the engine's replies. :func:`check_port_free` lets a caller refuse a
fixed port that any socket already holds, before bacpypes3 binds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket

from bacpypes3.apdu import AbortPDU, AbortReason, ErrorPDU, ErrorRejectAbortNack, RejectPDU
from bacpypes3.app import Application
from bacpypes3.argparse import SimpleArgumentParser
from bacpypes3.ipv4 import IPv4DatagramServer
from bacpypes3.pdu import Address

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
    ``local_address`` would otherwise only show as silence.
    """
    app = make_application(local_address, instance, name, request_timeout, retries, app_class)
    try:
        await asyncio.wait_for(bound_port(app), bind_within)
    except BaseException:
        task = asyncio.ensure_future(_discard(app))
        _DISCARDING.add(task)
        task.add_done_callback(_DISCARDING.discard)
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


class PortInUse(OSError):
    """A fixed local UDP port is already bound by some other socket (this process or another)."""


def local_endpoint(local_address: str) -> tuple[str, int]:
    """The ``(host, port)`` our socket binds for ``local_address`` (``host[/prefix]:port``); port 0 = ephemeral."""
    host, port = Address(local_address).addrTuple
    return str(host), int(port)


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


def check_port_free(local_address: str) -> None:
    """Raise :class:`PortInUse` if a fixed local UDP port is already bound; an ephemeral port always passes.

    The probe socket binds *without* ``SO_REUSEPORT``: the kernel then
    refuses it whenever any socket holds the port on that address or the
    wildcard, whatever that socket's options (bacpypes3's own bind would
    succeed). Another process can still take the port between this check and
    the bind; the window is one event-loop step.
    """
    host, port = local_endpoint(local_address)
    if port == 0:
        return
    try:
        probe_bind(host, port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise PortInUse(
            f"UDP {host}:{port} is already in use by another BACnet endpoint (another BMS process, a "
            "commissioning tool or other BACnet software); sharing it would mix that program's requests "
            "and COV subscriptions with ours, so it is refused",
        ) from None


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
