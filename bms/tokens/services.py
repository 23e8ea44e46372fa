"""Making and revoking tokens: the one place that does it, for the web page, the admin and the command.

Each is an audit entry (``token.created``, ``token.revoked``) naming the
token by its prefix, never its key; who did it is the acting user, or
``manage.py`` for the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from bms.control.models import AuditEntry
from bms.points.models import ConfigRevision
from bms.tokens import keys
from bms.tokens.models import SCOPE_RANK, ApiToken

NAME_CHARS = 64
COMMAND_LINE = "manage.py"


class TokenRequestInvalid(ValueError):
    """A token request that cannot be made (bad name, scope or lifetime); the message says why."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just made; ``key`` is shown once and cannot be recovered later."""

    token: ApiToken
    key: str


def _audit(by: AbstractBaseUser | None, action: str, token: ApiToken, detail: dict) -> None:
    AuditEntry.objects.create(
        user=by if by is not None and by.pk else None,
        username=by.get_username() if by is not None else COMMAND_LINE,
        action=action,
        target=f"bms_{token.prefix}",
        detail={"owner": token.user.get_username(), "name": token.name, **detail},
    )


def issue(owner: AbstractBaseUser, name: str, scope: str, days: float, by: AbstractBaseUser | None) -> IssuedToken:
    """Make a token for ``owner``; raise :class:`TokenRequestInvalid` with a clear message for bad input."""
    name = (name or "").strip()
    if not name or len(name) > NAME_CHARS or any(ord(char) < 32 for char in name):
        raise TokenRequestInvalid(f"name the token (1 to {NAME_CHARS} printable characters)")
    if scope not in SCOPE_RANK:
        raise TokenRequestInvalid(f"scope must be one of {', '.join(SCOPE_RANK)}, not {scope!r}")
    try:
        expires_at = ApiToken.expiry(days)
    except ValueError as exc:
        raise TokenRequestInvalid(str(exc)) from None
    new = keys.make_key()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=owner,
            name=name,
            prefix=new.prefix,
            digest=new.digest,
            scope=scope,
            created_by=by.get_username() if by is not None else COMMAND_LINE,
            expires_at=expires_at,
        )
        _audit(by, "token.created", token, {"scope": scope, "expires_at": expires_at.isoformat()})
    return IssuedToken(token, new.key)


def revoke(token: ApiToken, by: AbstractBaseUser | None) -> bool:
    """Revoke ``token`` (False if it already was)."""
    with transaction.atomic():
        updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=by.get_username() if by is not None else COMMAND_LINE
        )
        if not updated:
            return False
        token.refresh_from_db()
        _audit(by, "token.revoked", token, {})
        ConfigRevision.bump()  # .update() sends no post_save: the standby must learn of the revocation now
    return True
