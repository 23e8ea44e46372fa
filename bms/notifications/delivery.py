"""Sending one notification: email through Django's email backend, webhooks as signed JSON POSTs.

Email: Django's configured backend (``EMAIL_BACKEND``, ``EMAIL_HOST``, ...),
with the notification's key as the Message-ID (``<key@domain>``) and in an
``X-BMS-Idempotency-Key`` header. Webhook: ``POST`` of the canonical JSON
body (sorted keys, no spaces, UTF-8) with ``Content-Type: application/json``,
``Idempotency-Key: <key>`` and ``X-BMS-Signature: sha256=<hex>``, the
HMAC-SHA256 of the exact body bytes under the recipient's secret; any 2xx
answer is success, anything else (redirects included) a failure. Both have a
timeout. Failures raise :class:`DeliveryError` naming what they put out of
reach for the rest of a drain pass (the mail server, or one address).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import urllib.error
import urllib.request
from typing import Any

from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.base import BaseEmailBackend

from bms.notifications import conf
from bms.notifications.models import Notification, Recipient

SIGNATURE_HEADER = "X-BMS-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EMAIL_KEY_HEADER = "X-BMS-Idempotency-Key"
USER_AGENT = "bms-notifications/1"


class DeliveryError(Exception):
    """A notification could not be delivered; ``scope`` is what to skip for the rest of the pass."""

    def __init__(self, message: str, scope: tuple[str, str]) -> None:
        super().__init__(message)
        self.scope = scope


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The canonical JSON body: the same bytes on both nodes for the same payload."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``body`` under ``secret`` (what receivers recompute and compare)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _one_line(text: Any, limit: int = 200) -> str:
    return " ".join(str(text).split())[:limit]


def subject_of(notification: Notification) -> str:
    """The email subject: class, alarm, transition and message on one line."""
    facts = notification.payload
    head = "ESCALATION " if notification.stage == Notification.ESCALATION else ""
    klass = f"[{facts.get('class')}] " if facts.get("class") else ""
    text = f"{head}{klass}{facts.get('alarm')} {str(facts.get('transition', '')).replace('_', ' ')}"
    if facts.get("message"):
        text += f": {facts['message']}"
    return _one_line(text, 250)


def text_of(notification: Notification) -> str:
    """The email's plain-text body: the facts, one per line."""
    facts = notification.payload
    lines = []
    if notification.stage == Notification.ESCALATION:
        minutes = facts.get("unacknowledged_minutes")
        lines += [f"Escalation: this alarm is still unacknowledged {minutes} minutes after it was raised.", ""]
    for label, name in (
        ("Alarm", "alarm"),
        ("Transition", "transition"),
        ("State", "state"),
        ("Time (UTC)", "time"),
        ("Point", "point"),
        ("Value", "value"),
        ("Priority", "priority"),
        ("Class", "class"),
        ("Area", "area"),
        ("Message", "message"),
        ("User", "user"),
        ("Comment", "comment"),
    ):
        value = facts.get(name)
        if value not in (None, ""):
            lines.append(f"{label}: {value}")
    lines += ["", f"Rule: {facts.get('rule')}", f"Notification key: {notification.key}"]
    return "\n".join(lines) + "\n"


class EmailSender:
    """Sends notification emails over one backend connection, opened on first use and after a failure."""

    def __init__(self) -> None:
        self._connection: BaseEmailBackend | None = None

    def send(self, notification: Notification) -> None:
        if self._connection is None:
            connection = get_connection(fail_silently=False, timeout=conf.timeout())
            try:
                connection.open()  # kept open for the pass: one SMTP session for many messages
            except (smtplib.SMTPException, OSError) as exc:
                raise DeliveryError(f"email: {type(exc).__name__}: {_one_line(exc)}", ("email", "")) from exc
            self._connection = connection
        message = EmailMessage(
            subject=subject_of(notification),
            body=text_of(notification),
            from_email=conf.from_email(),
            to=[notification.address],
            headers={"Message-ID": notification.message_id, EMAIL_KEY_HEADER: notification.key},
            connection=self._connection,
        )
        try:
            sent = message.send()
        except smtplib.SMTPRecipientsRefused as exc:
            self.close()
            raise DeliveryError(f"recipient refused: {_one_line(exc)}", ("email", notification.address)) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise DeliveryError(f"email: {type(exc).__name__}: {_one_line(exc)}", ("email", "")) from exc
        if not sent:
            self.close()
            raise DeliveryError("email: the backend sent nothing", ("email", ""))

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # closing a broken connection: nothing more to lose
                pass


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not success: the body is never re-posted elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def send_webhook(notification: Notification, secret: str) -> int:
    """POST the notification's JSON body, signed; return the HTTP status (2xx) or raise :class:`DeliveryError`."""
    body = body_bytes(notification.payload)
    request = urllib.request.Request(
        notification.address,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: notification.key,
            SIGNATURE_HEADER: signature(secret, body),
        },
    )
    scope = ("webhook", notification.address)
    try:
        with _opener.open(request, timeout=conf.timeout()) as response:
            response.read(65536)
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DeliveryError(f"webhook answered HTTP {exc.code}", scope) from exc
    except OSError as exc:  # URLError, refused, reset, timeout
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"webhook: {type(exc).__name__}: {_one_line(reason)}", scope) from exc
    if not 200 <= status < 300:
        raise DeliveryError(f"webhook answered HTTP {status}", scope)
    return status


class Deliverer:
    """Delivers notifications of both channels during one drain pass; :meth:`close` at its end."""

    def __init__(self) -> None:
        self.email = EmailSender()
        self._secrets: dict[str, str | None] = {}

    def secret_of(self, recipient: str) -> str | None:
        if recipient not in self._secrets:
            self._secrets[recipient] = (
                Recipient.objects.filter(name=recipient, channel=Recipient.WEBHOOK).values_list("secret", flat=True)
            ).first()
        return self._secrets[recipient]

    def deliver(self, notification: Notification) -> None:
        """Send one notification, or raise :class:`DeliveryError`."""
        if notification.channel == Recipient.EMAIL:
            self.email.send(notification)
            return
        if notification.channel == Recipient.WEBHOOK:
            secret = self.secret_of(notification.recipient)
            if not secret:
                raise DeliveryError(
                    f"webhook recipient {notification.recipient!r} is not configured here (no secret to sign with)",
                    ("webhook", notification.address),
                )
            send_webhook(notification, secret)
            return
        raise DeliveryError(f"unknown channel {notification.channel!r}", (notification.channel, ""))

    def close(self) -> None:
        self.email.close()
