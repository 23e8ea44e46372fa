"""The accounts app: no models of its own; the role groups are created by its data migration and kept complete."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_migrate, pre_save


class AccountsConfig(AppConfig):
    name = "bms.accounts"
    label = "accounts"
    verbose_name = "accounts and roles"

    def ready(self) -> None:
        from axes.models import AccessAttempt

        from bms.accounts import sessions  # noqa: F401  (logout and password change close what the login held open)
        from bms.accounts.throttle import bound_attempt

        pre_save.connect(bound_attempt, sender=AccessAttempt, dispatch_uid="bms.accounts.bound_attempt")

        # Django sends post_migrate once per app with models; this app has none, so hang on auth's (once per migrate,
        # before the permissions of later apps exist: complete_roles creates them first).
        auth = global_apps.get_app_config("auth")
        post_migrate.connect(complete_roles, sender=auth, dispatch_uid="bms.accounts.complete_roles")


def complete_roles(sender: AppConfig, apps: Any = global_apps, using: str = "default", **kwargs: Any) -> None:
    """After every ``migrate``: grant the roles the permissions of models that arrived since (apps added later).

    Adds only. Skipped while this app's migration is not applied (``migrate accounts zero``).
    """
    from django.db import connections
    from django.db.migrations.recorder import MigrationRecorder

    from bms.accounts import roles

    if ("accounts", "0001_roles") not in MigrationRecorder(connections[using]).applied_migrations():
        return
    roles.create_all_permissions(apps, using=using)
    roles.sync_roles(apps)
