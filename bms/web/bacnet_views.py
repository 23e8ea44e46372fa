"""The web manager's BACnet discovery page: Who-Is, the devices that answer with their objects, and import.

Staff (engineers) only; importing also needs the permission to add points.
The page is stateless: an import asks the chosen device again (directed
Who-Is) so that what is imported is what the device has now.

A discovery that fails shows its one-line reason on the page, never a 500:
status 400 when what was typed is wrong (malformed or unresolvable address,
port out of range), 502 when the network or the device failed (the local
endpoint cannot be bound, the device stopped answering).
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import user_passes_test
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from bms.points import bacnet_tools
from bms.points.importer import ImportFailed
from drivers.bacnet_discovery import DiscoveryInputError
from drivers.base import DriverError

log = logging.getLogger(__name__)
MAX_WAIT = 10.0


def _staff(user) -> bool:
    return user.is_active and user.is_staff


def _wait(text: str | None) -> float:
    try:
        return min(MAX_WAIT, max(0.5, float(text or 3)))
    except ValueError:
        return 3.0


@user_passes_test(_staff)
def discover(request):
    context = {
        "address": "",
        "local": "",
        "wait": 3.0,
        "found": None,
        "can_import": request.user.has_perm("points.add_point") and request.user.has_perm("points.add_device"),
    }
    if request.method == "POST":
        if request.POST.get("action") == "import":
            return _import(request, context)
        address = request.POST.get("address", "").strip() or None
        local = request.POST.get("local", "").strip() or None
        wait = _wait(request.POST.get("wait"))
        context.update(address=address or "", local=local or "", wait=wait)
        try:
            context["found"] = bacnet_tools.discover(local, address, None, wait)
        except Exception as exc:
            messages.error(request, f"Discovery failed: {_reason(exc)}")
            return render(request, "web/bacnet_discover.html", context, status=_status(exc))
    return render(request, "web/bacnet_discover.html", context)


def _reason(exc: Exception) -> str:
    if isinstance(exc, DriverError | ValueError):
        return str(exc)
    # a bug, not the user's or the network's doing: the page still answers, the log keeps the traceback
    log.exception("BACnet discovery failed unexpectedly")
    return f"unexpected {type(exc).__name__}: {exc} (details in the server log)"


def _status(exc: Exception) -> int:
    """400 for input the user can correct, 502 for the network, the device or anything else on the way."""
    return 400 if isinstance(exc, DiscoveryInputError | ValueError) else 502


def _import(request, context: dict):
    if not context["can_import"]:
        messages.error(request, "You may not add devices and points.")
        return redirect("bacnet-discover")
    name = request.POST.get("device_name", "").strip()
    target = request.POST.get("target", "").strip()
    try:
        instance = int(request.POST.get("instance", ""))
    except ValueError:
        messages.error(request, "No device chosen.")
        return redirect("bacnet-discover")
    try:
        found = bacnet_tools.discover(None, target, instance, _wait(request.POST.get("wait")))
        if not found:
            raise DriverError(f"device {instance} at {target} no longer answers")
        device, objects = found[0]
        result = bacnet_tools.import_device(name, device, objects)
    except ImportFailed as exc:
        messages.error(request, "Nothing imported: " + "; ".join(exc.errors))
    except ValidationError as exc:
        messages.error(request, "Nothing imported: " + "; ".join(exc.messages))
    except Exception as exc:
        messages.error(request, f"Nothing imported: {_reason(exc)}")
        return render(request, "web/bacnet_discover.html", context, status=_status(exc))
    else:
        messages.success(
            request, f"Device {name}: {len(result.created)} point(s) created, {len(result.updated)} updated."
        )
    return redirect("bacnet-discover")
