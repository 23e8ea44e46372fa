"""``manage.py apitoken``: make, list and revoke API tokens from the command line (docs/api.md)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from bms.tokens.models import DEFAULT_DAYS, SCOPE_RANK, ApiToken
from bms.tokens.services import TokenRequestInvalid, issue, revoke


class Command(BaseCommand):
    help = "Make (the key is printed once), list or revoke API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="make a token and print its key once")
        create.add_argument("--user", required=True, help="the owner: the token never allows more than this user")
        create.add_argument("--name", required=True, help="what it is for")
        create.add_argument("--scope", choices=list(SCOPE_RANK), default="read")
        create.add_argument("--days", type=float, default=DEFAULT_DAYS, help=f"lifetime (default {DEFAULT_DAYS})")
        create.add_argument(
            "--site",
            action="append",
            default=[],
            dest="sites",
            metavar="NAME",
            help="narrow the token to this site (repeat for more; none: every site its user sees)",
        )
        listing = actions.add_parser("list", help="list tokens (never their keys)")
        listing.add_argument("--user", help="only this user's")
        gone = actions.add_parser("revoke", help="revoke a token by its prefix (bms_<prefix>_...)")
        gone.add_argument("prefix")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"_{action}")(**options)

    def _create(self, user: str, name: str, scope: str, days: float, sites: list[str], **_: Any) -> None:
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"there is no user {user!r}")
        try:
            issued = issue(owner, name, scope, days, by=None, sites=sites)
        except TokenRequestInvalid as exc:
            raise CommandError(str(exc)) from None
        token = issued.token
        where = f", sites {', '.join(sorted(set(sites)))}" if sites else ""
        self.stderr.write(
            f"token bms_{token.prefix} for {user} ({scope}{where}), expires {token.expires_at:%Y-%m-%d %H:%M} UTC. "
            "The key follows; it is shown only now:"
        )
        self.stdout.write(issued.key)

    def _list(self, user: str | None = None, **_: Any) -> None:
        tokens = (
            ApiToken.objects.select_related("user")
            .prefetch_related("sites__site")
            .order_by("user__username", "-created_at")
        )
        if user:
            tokens = tokens.filter(user__username=user)
        now = timezone.now()
        for token in tokens:
            narrowed = sorted(entry.site.name for entry in token.sites.all())
            where = f"  [sites: {', '.join(narrowed)}]" if narrowed else ""
            self.stdout.write(
                f"bms_{token.prefix}  {token.user.get_username():<16} {token.scope:<6} {token.state(now):<8} "
                f"expires {token.expires_at:%Y-%m-%d}  {token.name}{where}"
            )

    def _revoke(self, prefix: str, **_: Any) -> None:
        prefix = prefix.removeprefix("bms_").split("_")[0]
        token = ApiToken.objects.filter(prefix=prefix).first()
        if token is None:
            raise CommandError(f"there is no token bms_{prefix}")
        if not revoke(token, by=None):
            raise CommandError(f"token bms_{prefix} was already revoked")
        self.stdout.write(f"token bms_{prefix} revoked")
