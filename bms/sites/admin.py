"""Sites and who may see them, in the admin: engineers keep the sites, administrators grant them to users.

A caller restricted to some sites sees and edits only those sites (and makes no new one: it would be outside its
own grants). Who may see which site (:class:`SiteAccess`, :class:`SiteGrant`) is shown and changed only by
administrators who see every site: on its own page and inline on each user's page, where the sites granted are
a multiple choice (docs/sites.md).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Group
from django.db import transaction
from django.http import HttpRequest

from bms.sites.admin_scope import EverySiteOnly, SiteScopedAdminMixin
from bms.sites.models import Site, SiteAccess, SiteGrant
from bms.sites.scope import restricted


@admin.register(Site)
class SiteAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    site_path = "pk"
    list_display = ("name", "title")
    search_fields = ("name", "title")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # a site made by a restricted engineer would not be among its grants: it could not see what it made
        return super().has_add_permission(request) and not restricted(request)


class SiteGrantInline(EverySiteOnly, admin.TabularInline):
    model = SiteGrant
    extra = 1


@admin.register(SiteAccess)
class SiteAccessAdmin(EverySiteOnly, admin.ModelAdmin):
    list_display = ("user", "all_sites", "granted")
    list_filter = ("all_sites",)
    search_fields = ("user__username",)
    inlines = [SiteGrantInline]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("user").prefetch_related("grants__site")

    @admin.display(description="sites granted")
    def granted(self, access: SiteAccess) -> str:
        return ", ".join(grant.site.name for grant in access.grants.all()) or "-"


class SiteAccessForm(forms.ModelForm):
    """A user's site access with the sites granted as one multiple choice (saved as :class:`SiteGrant` rows)."""

    sites = forms.ModelMultipleChoiceField(
        queryset=Site.objects.all(),
        required=False,
        widget=FilteredSelectMultiple("sites", is_stacked=False),
        help_text="the sites this user sees when 'all sites' is off (none: no site at all)",
    )

    class Meta:
        model = SiteAccess
        fields = ("all_sites",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["sites"].initial = [grant.site_id for grant in self.instance.grants.all()]

    def save(self, commit: bool = True) -> SiteAccess:
        access = super().save(commit=commit)
        if commit:
            self._save_grants(access)
        else:  # the caller saves the access later, then calls save_m2m(): the grants follow it
            saving_m2m = self.save_m2m

            def save_m2m() -> None:
                saving_m2m()
                self._save_grants(access)

            self.save_m2m = save_m2m
        return access

    def _save_grants(self, access: SiteAccess) -> None:
        wanted = {site.pk for site in self.cleaned_data.get("sites", [])}
        with transaction.atomic():
            access.grants.exclude(site_id__in=wanted).delete()
            held = set(access.grants.values_list("site_id", flat=True))
            for site_id in sorted(wanted - held):  # one save each: the revision bump and the audit follow the rows
                SiteGrant.objects.create(access=access, site_id=site_id)


class SiteAccessInline(EverySiteOnly, admin.StackedInline):
    """A user's site access on the user's own page."""

    model = SiteAccess
    form = SiteAccessForm
    can_delete = True
    max_num = 1
    verbose_name_plural = "site access (none: this user sees every site)"


User = get_user_model()
BaseUserAdmin: type[admin.ModelAdmin] = (
    type(admin.site.get_model_admin(User)) if admin.site.is_registered(User) else UserAdmin
)


class SiteUserAdmin(EverySiteOnly, BaseUserAdmin):  # type: ignore[misc, valid-type]
    """Django's user admin (every behaviour kept) with the user's site access inline. Only for callers who see
    every site: an administrator restricted to some sites could otherwise lift its own restriction (or make itself
    a superuser) and would see the accounts of every site."""

    inlines = [*BaseUserAdmin.inlines, SiteAccessInline]


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, SiteUserAdmin)


class SiteGroupAdmin(EverySiteOnly, type(admin.site.get_model_admin(Group))):  # type: ignore[misc]
    """Django's group admin, only for callers who see every site (a group's permissions hold on every site)."""


admin.site.unregister(Group)
admin.site.register(Group, SiteGroupAdmin)
