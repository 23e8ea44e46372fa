"""API tokens in the admin: list, inspect (with the sites a token is narrowed to), revoke.

New tokens are made where the key can be shown once (the web manager's token page, ``manage.py apitoken``), and
their sites are said then. A caller restricted to some sites (docs/sites.md) sees only its own tokens here, and the
record of token uses not at all: a token's name, owner and uses may concern any site.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from bms.sites.admin_scope import EverySiteOnly
from bms.sites.models import TokenSite
from bms.sites.scope import in_sites, request_site_ids, restricted
from bms.tokens.models import ApiToken, TokenUse
from bms.tokens.services import revoke


class TokenSiteInline(admin.TabularInline):
    """The sites a token is narrowed to, read-only: they are chosen when the token is made (none: every site)."""

    model = TokenSite
    extra = 0
    fields = ("site",)
    readonly_fields = ("site",)
    verbose_name_plural = "sites (none: every site its user sees)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[TokenSite]:
        return in_sites(super().get_queryset(request).select_related("site"), request_site_ids(request))

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "user", "scope", "created_at", "expires_at", "state")
    list_filter = ("scope",)
    search_fields = ("prefix", "name", "user__username")
    readonly_fields = ("prefix", "digest", "created_at", "created_by", "revoked_at", "revoked_by")
    fields = ("user", "name", "scope", "expires_at", *readonly_fields)
    actions = ["revoke_selected"]
    inlines = [TokenSiteInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        tokens = super().get_queryset(request)
        return tokens.filter(user=request.user) if restricted(request) else tokens

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a key is shown once when made: the web manager's token page or manage.py apitoken

    @admin.display(description="state")
    def state(self, token: ApiToken) -> str:
        return token.state(timezone.now())

    @admin.action(description="Revoke the selected tokens")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = sum(revoke(token, request.user) for token in queryset)
        self.message_user(request, f"{count} token(s) revoked.", messages.SUCCESS)


@admin.register(TokenUse)
class TokenUseAdmin(EverySiteOnly, admin.ModelAdmin):
    """Every request made with a token; a use names any path of any site: only for callers who see every site."""

    list_display = ("time", "prefix", "username", "method", "path", "status", "origin")
    list_filter = ("method", "status")
    search_fields = ("prefix", "username", "path")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
