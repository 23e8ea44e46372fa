"""Site scope in the Django admin: what a caller restricted to some sites may list, open, choose and change there.

The rule is :mod:`bms.sites.scope`'s (docs/sites.md): another site's object is answered exactly like one that
does not exist. In the admin that means:

* changelists, counts, "select all", actions and list filters know only the objects of the caller's sites
  (:class:`SiteScopedAdminMixin` narrows ``get_queryset``, which every admin view starts from);
* a change, delete or history URL of another site's object by id is Django's own answer for a missing id (a
  redirect to the admin index saying that no object has that id), because ``get_object`` looks it up in that
  narrowed queryset;
* the choices of a site, device, point or calendar field (select boxes, autocomplete, the values a POST may
  name) are those of the caller's sites, so naming another site's object in a form is refused with the very
  message a nonexistent id gets ("Select a valid choice");
* the list filters by site or device offer only the caller's sites and devices
  (:class:`SiteRelatedFieldListFilter`).

Unrestricted callers take the old path unchanged: no filter, Django's own choices; for them a device, schedule
or rule saved with no site gets the default site ``main``, as everywhere else (a restricted caller names one of
its sites).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from bms.points.models import Device, Point
from bms.schedules.models import Calendar
from bms.sites.models import Site
from bms.sites.scope import SiteIds, in_sites, request_site_ids, restricted, sees_all, shared_or_in_sites

#: model → (path from one of its rows to its site, whether a row of no site is shared by every site)
CHOICE_PATHS: dict[type[Model], tuple[str, bool]] = {
    Site: ("pk", False),
    Device: ("site", False),
    Point: ("device__site", False),
    Calendar: ("site", True),
}


def narrowed(queryset: QuerySet, ids: SiteIds, path: str, shared: bool = False) -> QuerySet:
    """``queryset`` narrowed to the sites ``ids`` along ``path``; with ``shared``, rows of no site stay."""
    return shared_or_in_sites(queryset, ids, path) if shared else in_sites(queryset, ids, path)


def choices_in_sites(model: type[Model], queryset: QuerySet | None, ids: SiteIds) -> QuerySet | None:
    """The rows of ``model`` (from ``queryset``, else all) a caller of the sites ``ids`` may choose.

    ``queryset`` unchanged (``None`` included: Django's default) when the caller sees every site or ``model``
    does not belong to sites (an alarm class, a user).
    """
    if sees_all(ids) or model not in CHOICE_PATHS:
        return queryset
    path, shared = CHOICE_PATHS[model]
    return narrowed(queryset if queryset is not None else model._default_manager.all(), ids, path, shared)


class SiteChoicesMixin:
    """Foreign-key choices (sites, devices, points, calendars) limited to the caller's sites; for admins and inlines."""

    def get_field_queryset(self, db: str | None, db_field: Any, request: HttpRequest) -> QuerySet | None:
        # Django asks this for every foreign key's choices (select, autocomplete and raw-id widgets alike), and the
        # form field validates a POSTed id against the same queryset: one narrowing covers showing and accepting.
        queryset = super().get_field_queryset(db, db_field, request)  # type: ignore[misc]
        return choices_in_sites(db_field.remote_field.model, queryset, request_site_ids(request))


class SiteScopedAdminMixin(SiteChoicesMixin):
    """A ``ModelAdmin`` whose objects belong to sites: only those of the caller's sites exist for it.

    ``site_path`` is the path from the admin's model to its site (``site``, ``device__site``,
    ``point__device__site``; ``pk`` for the site itself); ``shared_site`` keeps rows of no site (shared
    calendars) visible to every caller.
    """

    site_path: str = "site"
    shared_site: bool = False
    #: the site (its id, from a callable) of a row saved without one, for a caller who sees every site; ``None``:
    #: the model decides. Only for a model with its own ``site`` field.
    default_site: Callable[[], int] | None = None

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        return narrowed(queryset, request_site_ids(request), self.site_path, self.shared_site)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> type:
        form = super().get_form(request, obj, change=change, **kwargs)  # type: ignore[misc]
        if self.default_site is None or "site" not in form.base_fields or restricted(request):
            return form
        default_site = self.default_site

        class DefaultSiteForm(form):  # type: ignore[misc, valid-type]
            """The site may be left empty: it is then the default site, before the model's checks see it."""

            def clean_site(self) -> Site:
                return self.cleaned_data.get("site") or Site.objects.get(pk=default_site())

        DefaultSiteForm.base_fields["site"].required = False
        return DefaultSiteForm


class SiteRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """The list filter of a site, device or point field: only the caller's sites' objects are offered."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
        allowed = choices_in_sites(field.related_model, None, request_site_ids(request))
        if allowed is None:
            return super().field_choices(field, request, model_admin)
        ordering = self.field_admin_ordering(field, request, model_admin)
        return field.get_choices(
            include_blank=False, limit_choices_to={"pk__in": allowed.values("pk")}, ordering=ordering
        )


class EverySiteOnly:
    """A ``ModelAdmin`` (or inline) only for callers who see every site, on top of the model permissions: who sees
    which site, and rows that name objects of every site (the audit trail, token uses, the notification outbox)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) and not restricted(request)  # type: ignore[misc]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) and not restricted(request)  # type: ignore[misc]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return super().has_add_permission(request, *args) and not restricted(request)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and not restricted(request)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and not restricted(request)  # type: ignore[misc]
