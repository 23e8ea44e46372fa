"""API tokens in the admin: list, inspect, revoke. New tokens are made where the key can be shown once."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from bms.tokens.models import ApiToken, TokenUse
from bms.tokens.services import revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "user", "scope", "created_at", "expires_at", "state")
    list_filter = ("scope",)
    search_fields = ("prefix", "name", "user__username")
    readonly_fields = ("prefix", "digest", "created_at", "created_by", "revoked_at", "revoked_by")
    fields = ("user", "name", "scope", "expires_at", *readonly_fields)
    actions = ["revoke_selected"]

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
class TokenUseAdmin(admin.ModelAdmin):
    list_display = ("time", "prefix", "username", "method", "path", "status", "origin")
    list_filter = ("method", "status")
    search_fields = ("prefix", "username", "path")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
