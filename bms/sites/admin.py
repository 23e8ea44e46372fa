"""Sites and who may see them, in the admin: engineers keep the sites, administrators grant them to users."""

from __future__ import annotations

from django.contrib import admin

from bms.sites.models import Site, SiteAccess, SiteGrant


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ("name", "title")
    search_fields = ("name", "title")


class SiteGrantInline(admin.TabularInline):
    model = SiteGrant
    extra = 1


@admin.register(SiteAccess)
class SiteAccessAdmin(admin.ModelAdmin):
    list_display = ("user", "all_sites")
    list_filter = ("all_sites",)
    search_fields = ("user__username",)
    inlines = [SiteGrantInline]
