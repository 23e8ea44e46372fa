"""``manage.py createoperator [--username operator] [--role operator]``: a first account with a password nobody knows.

The password is ``BMS_OPERATOR_PASSWORD`` if that is set, else generated and printed once, when the account is
created; run again, the command leaves an existing account (and its password) alone and prints no password.
The production replacement for ``loaddemo --demo-user`` (docker/compose.yaml runs it; docs/security.md).
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from bms.accounts import roles

PASSWORD_VARIABLE = "BMS_OPERATOR_PASSWORD"


class Command(BaseCommand):
    help = "Create a user in a role group with a generated password, printed once (or BMS_OPERATOR_PASSWORD)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="operator")
        parser.add_argument("--role", default=roles.OPERATOR, choices=roles.ROLES)

    def handle(self, *args: Any, username: str, role: str, **options: Any) -> None:
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"user {username} exists; its password is unchanged and not shown")
            return
        given = os.environ.get(PASSWORD_VARIABLE, "")
        password = given or secrets.token_urlsafe(15)
        user = User(username=username)
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(f"{PASSWORD_VARIABLE} is not acceptable: {' '.join(exc.messages)}") from exc
        with transaction.atomic():
            group = Group.objects.filter(name=role).first()
            if group is None:  # the role groups come with migrate; a flushed database lacks them
                roles.sync_roles()
                group = Group.objects.get(name=role)
            user.set_password(password)
            user.save()
            user.groups.add(group)
        if given:
            self.stdout.write(f"created {role} {username} with the password from {PASSWORD_VARIABLE}")
        else:
            # Printed this once only: it is stored hashed and cannot be shown again.
            self.stdout.write(f"created {role} {username}; password (shown once, write it down): {password}")
