"""Site scope for the API's views: the caller's sites, worked out once per request, and lookups that answer
another site's object exactly like a missing one (:mod:`bms.sites.scope` holds the rule; this only applies it).

Shared by the ``/api/v1/`` views and the older ``/api/`` ones, so that a point, a device or a command of another
site gets the very message an unknown one gets.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework.exceptions import NotFound

from bms.control.models import Command
from bms.points.models import Point
from bms.sites import scope


def point_missing(name: object) -> str:
    """What the API says of a point that does not exist (or that the caller may not see: the same words)."""
    return f"There is no point named {name!r}."


def visible_points(request: Any) -> QuerySet:
    """The points of the caller's sites, with their device and site."""
    return scope.points_in_sites(scope.request_site_ids(request)).select_related("device", "device__site")


def visible_point(request: Any, name: str) -> Point:
    """The point ``name`` if the caller sees it; else :class:`NotFound`, worded as for an unknown point."""
    point = visible_points(request).filter(name=name).first()
    if point is None:
        raise NotFound(point_missing(name))
    return point


def visible_commands(request: Any) -> QuerySet:
    """The commands of the points the caller sees (a restricted caller: not those whose point was deleted)."""
    return scope.in_sites(Command.objects.all(), scope.request_site_ids(request), "point__device__site")


def restricted(request: Any) -> bool:
    """Whether the caller sees only some sites (then a lookup must come before anything that could tell)."""
    return not scope.sees_all(scope.request_site_ids(request))
