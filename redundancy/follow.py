"""Follow tokens: a signed, short-lived note that lets a logged-in user continue on the partner node.

When the active node changes, pages move to the other node; the session
cookie does not (another origin, and each node keeps its own sessions). The
page holds a follow token fetched from its own node, and opens
``/redundancy/follow?token=...&next=...`` on the other one, which logs the
same user in. Tokens are signed with the pair's shared ``BMS_SYNC_SECRET``
(the nodes' ``SECRET_KEY`` may differ) and carry the user's id, name and a
digest of the password hash: users replicate with the same primary key and
password hash, and a password change voids the tokens issued before it.

A token is single-use and good only on the other node: it names the node that
issued it (refused there), and its id is recorded as used where it is redeemed
(:class:`~bms.accounts.models.VoidFollowToken`, replicated to the issuer). It
also carries a digest of the session it was issued to: logging out voids the
session's tokens on both nodes (``bms.accounts.sessions``). A token stolen from
an access log is thus worth nothing once its user has followed it or logged out.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils.crypto import constant_time_compare, salted_hmac

from bms.accounts.models import VoidFollowToken
from bms.accounts.sessions import session_digest
from redundancy.config import MIN_SECRET_LENGTH

SALT = "bms.follow"
# Short: a token is a bearer credential in a URL (it may reach access logs); pages refresh it every 10 min.
MAX_AGE_SECONDS = 3600
#: how often pages fetch a fresh token (live.js/follow.js use the same figure)
REFRESH_SECONDS = 600


class FollowRefused(Exception):
    """The token cannot log anybody in; the message says why (for the log, not for the page)."""


def _secret() -> str:
    secret = settings.BMS_SYNC_SECRET
    if len(secret) < MIN_SECRET_LENGTH:
        raise FollowRefused("no pair secret is configured (BMS_SYNC_SECRET), so follow tokens are disabled")
    return secret


def available() -> bool:
    return len(settings.BMS_SYNC_SECRET) >= MIN_SECRET_LENGTH


def _password_digest(user: AbstractBaseUser, secret: str) -> str:
    return salted_hmac(SALT, user.password or "", secret=secret, algorithm="sha256").hexdigest()[:24]


def make_token(user: AbstractBaseUser, session_key: str | None = None) -> str:
    """A token for ``user``, tied to the session it is issued to, good once on the partner node."""
    secret = _secret()
    payload = {
        "uid": user.pk,
        "u": user.get_username(),
        "p": _password_digest(user, secret),
        "j": secrets.token_hex(16),  # the token's id: recorded when it is used
        "s": session_digest(session_key),
        "n": settings.BMS_NODE_NAME,  # the issuer, where the token is refused
    }
    return signing.dumps(payload, key=secret, salt=SALT, compress=True)


def revoke_session(session_key: str | None) -> None:
    """Void every token issued to this session (it logged out); replicated to the partner."""
    if not session_key:
        return
    try:
        with transaction.atomic():
            VoidFollowToken.objects.create(key=session_digest(session_key), reason=VoidFollowToken.LOGOUT)
    except IntegrityError:
        pass  # already void


def user_for_token(token: str, max_age: float = MAX_AGE_SECONDS) -> AbstractBaseUser:
    """Redeem the token: the active user it names; :class:`FollowRefused` if it is expired, forged, stale, used,
    logged out, or issued by this very node. A token that passes is used up."""
    secret = _secret()
    try:
        payload: Any = signing.loads(token, key=secret, salt=SALT, max_age=max_age)
    except signing.SignatureExpired as exc:
        raise FollowRefused(f"follow token expired ({exc})") from None
    except signing.BadSignature:
        raise FollowRefused("follow token has a bad signature (forged, damaged, or from another pair)") from None
    if not isinstance(payload, dict) or not {"uid", "u", "p", "j", "s", "n"} <= payload.keys():
        raise FollowRefused("follow token has an unexpected payload")
    if payload["n"] == settings.BMS_NODE_NAME:
        raise FollowRefused(f"follow token was issued by this node ({payload['n']}); it is good on the partner only")
    user = get_user_model().objects.filter(pk=payload["uid"]).first()
    if user is None or user.get_username() != payload["u"]:
        raise FollowRefused(f"user {payload['u']!r} (id {payload['uid']}) does not exist on this node")
    if not user.is_active:
        raise FollowRefused(f"user {payload['u']!r} is inactive")
    if not constant_time_compare(_password_digest(user, secret), str(payload["p"])):
        raise FollowRefused(f"the password of {payload['u']!r} changed since the token was issued")
    token_id, session = str(payload["j"])[:64], str(payload["s"])[:64]
    if VoidFollowToken.objects.filter(key=session, reason=VoidFollowToken.LOGOUT).exists():
        raise FollowRefused(f"follow token of {payload['u']!r} belongs to a session that logged out")
    try:
        with transaction.atomic():
            VoidFollowToken.objects.create(key=token_id, reason=VoidFollowToken.USED)
    except IntegrityError:
        raise FollowRefused(f"follow token of {payload['u']!r} was used already") from None
    return user
