"""Which sites a user (or a user's API token) may see, and the filters every list, detail, write and push applies.

The rule (docs/sites.md): a superuser, a user without a :class:`~bms.sites.models.SiteAccess`
row, or one whose access says ``all_sites``, sees every site; any other user sees the sites
granted, and nothing else. A token narrowed to sites (:class:`~bms.sites.models.TokenSite`)
sees the part of those that its user sees. :data:`ALL` (``None``) stands for "every site".

An object of a site the caller cannot see is answered exactly like one that does not exist
(same status, same message), and counts and lists leave it out: nothing tells that it is there.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from bms.sites.models import SiteAccess, TokenSite

#: "every site": what :func:`site_ids` returns for an unrestricted caller
ALL = None
SiteIds = frozenset[int] | None
_REQUEST_CACHE = "_bms_site_ids"


def site_ids(user: Any, token: Any = None) -> SiteIds:
    """The ids of the sites ``user`` (through ``token``, if given) may see; :data:`ALL` for every site."""
    if user is None or not user.is_authenticated or not user.is_active:
        return frozenset()
    ids: SiteIds = ALL if user.is_superuser else _user_site_ids(user)
    if token is not None:
        narrowed = frozenset(TokenSite.objects.filter(token=token).values_list("site_id", flat=True))
        if narrowed:
            ids = narrowed if ids is ALL else ids & narrowed
    return ids


def _user_site_ids(user: Any) -> SiteIds:
    access = SiteAccess.objects.filter(user=user).first()
    if access is None or access.all_sites:
        return ALL
    return frozenset(access.grants.values_list("site_id", flat=True))


def request_site_ids(request: Any) -> SiteIds:
    """:func:`site_ids` of a Django or DRF request's user and token, worked out once per request."""
    raw = getattr(request, "_request", request)  # a DRF Request wraps the Django one
    if hasattr(raw, _REQUEST_CACHE):
        return getattr(raw, _REQUEST_CACHE)
    ids = site_ids(getattr(request, "user", None), getattr(raw, "bms_token", None))
    setattr(raw, _REQUEST_CACHE, ids)
    return ids


def sees_all(ids: SiteIds) -> bool:
    return ids is ALL


def restricted(request: Any) -> bool:
    """Whether a request's caller sees only some sites (then a lookup must come before anything that could tell)."""
    return request_site_ids(request) is not ALL


def in_sites(queryset: QuerySet, ids: SiteIds, field: str = "site") -> QuerySet:
    """``queryset`` narrowed to rows whose ``field`` (a path to a site, e.g. ``device__site``) is in ``ids``."""
    if ids is ALL:
        return queryset
    return queryset.filter(**{f"{field}__in": ids})


def shared_or_in_sites(queryset: QuerySet, ids: SiteIds, field: str = "site") -> QuerySet:
    """``queryset`` narrowed to rows of the sites ``ids`` or of no site (shared, e.g. a holiday calendar)."""
    if ids is ALL:
        return queryset
    return queryset.filter(Q(**{f"{field}__in": ids}) | Q(**{f"{field}__isnull": True}))


def named_in_sites(rows: QuerySet, ids: SiteIds, field: str = "point_name") -> QuerySet:
    """``rows`` whose ``field`` names a point of the sites ``ids`` (one subquery, however many points): history
    rows that keep a point's name, not a key (the alarm journal)."""
    if ids is ALL:
        return rows
    return rows.filter(**{f"{field}__in": points_in_sites(ids).values("name")})


def points_in_sites(ids: SiteIds) -> QuerySet:
    """The points of the sites ``ids``."""
    from bms.points.models import Point

    return in_sites(Point.objects.all(), ids, "device__site")


def visible_point_names(ids: SiteIds) -> frozenset[str] | None:
    """The names of the points of the sites ``ids``; ``None`` for every point (no query)."""
    if ids is ALL:
        return None
    return frozenset(points_in_sites(ids).values_list("name", flat=True))


def visible_sources(ids: SiteIds) -> frozenset[str] | None:
    """The device and point names of the sites ``ids`` (what an event's ``source`` names); ``None`` for all.

    A restricted caller sees an event only when its source is one of these: an event of the pair or of a
    device since deleted belongs to no site it can be shown to be part of.
    """
    if ids is ALL:
        return None
    from bms.points.models import Device

    devices = in_sites(Device.objects.all(), ids).values_list("name", flat=True)
    return frozenset(devices) | visible_point_names(ids)
