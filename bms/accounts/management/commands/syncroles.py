"""``manage.py syncroles``: create the role groups if missing and grant them the permissions of every model."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from bms.accounts import roles


class Command(BaseCommand):
    help = (
        "Create the groups viewer, operator, engineer and administrator if missing and grant each the permissions "
        "its role gives (docs/api.md), models added since included. Only adds, unless --exact."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--exact", action="store_true", help="also take away permissions the roles do not give (added by hand)"
        )

    def handle(self, *args: Any, exact: bool, **options: Any) -> None:
        with transaction.atomic():
            counts = roles.sync_roles(exact=exact)
        for role, count in counts.items():
            self.stdout.write(f"{role}: {count} permissions")
