"""Making and revoking tokens: the one place that does it, for the web page, the admin and the command.

Each is an audit entry (``token.created``, ``token.revoked``) naming the
token by its prefix, never its key; who did it is the acting user, or
``manage.py`` for the command line.

A token may be narrowed to some of its owner's sites when it is made
(:class:`~bms.sites.models.TokenSite`, docs/sites.md); a site the owner (or
the user making it) does not see is refused exactly like a site that does
not exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from bms.control.models import AuditEntry
from bms.points.models import ConfigRevision
from bms.sites.models import Site, TokenSite
from bms.sites.scope import in_sites, site_ids
from bms.tokens import keys
from bms.tokens.models import SCOPE_RANK, ApiToken

NAME_CHARS = 64
#: the most sites one token may be narrowed to (a request naming more is refused, not cut)
MAX_SITES = 100
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


def narrowing_sites(owner: AbstractBaseUser, names: Iterable[str], by: AbstractBaseUser | None) -> list[Site]:
    """The sites ``names`` for a token of ``owner`` made by ``by``; refuses a name either does not see.

    The refusal reads exactly as for a site that does not exist: it must not tell that the site is there.
    """
    wanted = sorted({str(name).strip() for name in names})
    if len(wanted) > MAX_SITES:
        raise TokenRequestInvalid(f"a token is narrowed to at most {MAX_SITES} sites")
    if not wanted:
        return []
    visible = in_sites(Site.objects.filter(name__in=wanted), site_ids(owner), "pk")
    if by is not None and by.pk != owner.pk:
        visible = in_sites(visible, site_ids(by), "pk")
    found = {site.name: site for site in visible}
    for name in wanted:
        if name not in found:
            raise TokenRequestInvalid(f"there is no site named {name!r}")
    return [found[name] for name in wanted]


def issue(
    owner: AbstractBaseUser,
    name: str,
    scope: str,
    days: float,
    by: AbstractBaseUser | None,
    sites: Iterable[str] = (),
) -> IssuedToken:
    """Make a token for ``owner``, narrowed to the sites named ``sites`` (none: all of the owner's sites).

    Raise :class:`TokenRequestInvalid` with a clear message for bad input.
    """
    name = (name or "").strip()
    if not name or len(name) > NAME_CHARS or any(ord(char) < 32 for char in name):
        raise TokenRequestInvalid(f"name the token (1 to {NAME_CHARS} printable characters)")
    if scope not in SCOPE_RANK:
        raise TokenRequestInvalid(f"scope must be one of {', '.join(SCOPE_RANK)}, not {scope!r}")
    try:
        expires_at = ApiToken.expiry(days)
    except ValueError as exc:
        raise TokenRequestInvalid(str(exc)) from None
    narrowed = narrowing_sites(owner, sites, by)
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
        for site in narrowed:
            TokenSite.objects.create(token=token, site=site)
        detail = {"scope": scope, "expires_at": expires_at.isoformat()}
        if narrowed:
            detail["sites"] = [site.name for site in narrowed]
        _audit(by, "token.created", token, detail)
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
