"""The web manager's BACnet discovery page: Who-Is, the devices that answer with their objects, and import.

Staff (engineers) only; importing also needs the permission to add points.
The page is stateless: an import asks the chosen device again (directed
Who-Is) so that what is imported is what the device has now.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import user_passes_test
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from bms.points import bacnet_tools
from bms.points.importer import ImportFailed
from drivers.base import DriverError

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
        except (DriverError, ValueError) as exc:
            messages.error(request, f"Discovery failed: {exc}")
    return render(request, "web/bacnet_discover.html", context)


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
    except (DriverError, ValueError) as exc:
        messages.error(request, f"Nothing imported: {exc}")
    else:
        messages.success(
            request, f"Device {name}: {len(result.created)} point(s) created, {len(result.updated)} updated."
        )
    return redirect("bacnet-discover")
