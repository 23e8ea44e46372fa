"""The API tokens app: tokens for scripts, their scopes and a record of every use (docs/api.md)."""

from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "bms.tokens"
    label = "tokens"
    verbose_name = "API tokens"

    def ready(self) -> None:
        from bms.tokens import signals  # noqa: F401  (connects the revision bump)
