"""Logging out and changing a password end what the old login still held open: live websockets, follow tokens.

* Logout (``user_logged_out``): the session's websockets are closed (code 4401) and its follow tokens voided
  (:func:`redundancy.follow.revoke_session`, replicated to the partner).
* Password change (a user saved with a new password hash: the admin's password form, ``changepassword``, code):
  every websocket of that user is closed; its follow tokens are void already (they carry a digest of the hash).
  Clients whose session is still valid (the one that changed the password) reconnect and are let in again.

Websockets are closed through the channel layer, so every web process of the node hears it
(:mod:`bms.realtime.revocation`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest

SALT = "bms.session"


def session_digest(session_key: str | None) -> str:
    """What tokens, websockets and revocations carry of a session: never the key itself (it would log anyone in)."""
    return hashlib.sha256(f"{SALT}:{session_key or ''}".encode()).hexdigest()[:32]


@receiver(user_logged_out, dispatch_uid="bms.accounts.sessions.logged_out")
def logged_out(sender: Any, request: HttpRequest | None = None, user: Any = None, **kwargs: Any) -> None:
    from bms.realtime import revocation
    from redundancy import follow

    session_key = request.session.session_key if request is not None and hasattr(request, "session") else None
    if not session_key:
        return
    follow.revoke_session(session_key)
    revocation.close_live(session=session_digest(session_key))


@receiver(pre_save, dispatch_uid="bms.accounts.sessions.password_before")
def _note_password_change(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    if raw or sender is not get_user_model() or instance.pk is None:
        return
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and "password" not in update_fields:
        return  # e.g. last_login at every login: no query for that
    before = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    instance._bms_password_changed = before is not None and before != instance.password


@receiver(post_save, dispatch_uid="bms.accounts.sessions.password_after")
def _password_changed(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    if sender is not get_user_model() or not getattr(instance, "_bms_password_changed", False):
        return
    instance._bms_password_changed = False
    from bms.realtime import revocation

    revocation.close_live(user=instance.pk)
