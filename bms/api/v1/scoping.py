"""Site scope for the API's views: the caller's sites, worked out once per request, and lookups that answer
another site's object exactly like a missing one (:mod:`bms.sites.scope` holds the rule; this only applies it).

Shared by the ``/api/v1/`` views and the older ``/api/`` ones, so that a point, a device or a command of another
site gets the very message an unknown one gets.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework.exceptions import NotFound, ValidationError

from bms.api.v1.alarms import NameField
from bms.control.models import Command
from bms.points.models import Point
from bms.sites import scope
from bms.sites.models import DEFAULT_SITE, Site


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


def context_site_ids(context: dict[str, Any]) -> scope.SiteIds:
    """The sites of the request a serializer works for; every site when it works for none (code, tests)."""
    request = context.get("request")
    return scope.ALL if request is None else scope.request_site_ids(request)


class ScopedNameField(NameField):
    """Another object by name, among those of the caller's sites: one of another site reads as a missing name.

    ``site_field``: the path from the object to its site (``pk`` for a site itself); ``shared``: objects of no
    site are seen by every caller.
    """

    def __init__(self, *, site_field: str = "site", shared: bool = False, **kwargs: Any) -> None:
        self.site_field, self.shared = site_field, shared
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet:
        narrow = scope.shared_or_in_sites if self.shared else scope.in_sites
        return narrow(super().get_queryset(), context_site_ids(self.context), self.site_field)


def site_field(**kwargs: Any) -> ScopedNameField:
    """The ``site`` of an object, by name, among the caller's scope."""
    return ScopedNameField(
        slug_field="name",
        queryset=Site.objects.all(),
        site_field="pk",
        required=False,
        error_messages={"does_not_exist": "There is no site named {value!r}."},
        **kwargs,
    )


class DefaultSiteMixin:
    """On create without a ``site``: the default site when the caller sees it (the model's default), else required."""

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        data = super().validate(data)  # type: ignore[misc]
        ids = context_site_ids(self.context)  # type: ignore[attr-defined]
        if self.instance is None and "site" not in data and not scope.sees_all(ids):  # type: ignore[attr-defined]
            site = Site.objects.filter(name=DEFAULT_SITE, pk__in=ids).first()
            if site is None:
                required = self.fields["site"].error_messages["required"]  # type: ignore[attr-defined]
                raise ValidationError({"site": [required]})
            data["site"] = site
        return data
