"""Template context for every page (the web manager and the admin): this node's role, for the banner and clients."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from redundancy import follow
from redundancy.nodeview import node_view


def pair(request: HttpRequest) -> dict[str, Any]:
    view = node_view(request)
    return {"bms_pair": view, "bms_follow_enabled": view.pair and follow.available()}
