"""API tokens: scopes, refusals with a reason, every use recorded, never more than the user, replicated."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from bms.control.models import AuditEntry
from bms.tokens.models import ApiToken, TokenUse
from bms.tokens.services import issue
from redundancy import configsync
from tests.api.conftest import PASSWORD, JsonClient

DEFINITION = {"point": "zone1_setpoint", "kind": "high", "limit": 30.0, "class": "medium", "area": "Zone 1"}


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def token_for(user: User, scope: str, days: float = 30) -> str:
    return issue(user, f"{scope} script", scope, days, by=user).key


@pytest.fixture
def anonymous() -> JsonClient:
    # CSRF checks on, as for a browser: a token request needs none.
    return JsonClient(None, enforce_csrf_checks=True)


def test_a_read_token_reads_and_is_refused_a_change_with_its_scope_named(users, definitions, anonymous):
    key = token_for(users["engineer"], "read")
    assert anonymous.get("/api/v1/alarm-definitions/", **bearer(key)).status_code == 200
    response = anonymous.post("/api/v1/alarm-definitions/", DEFINITION, **bearer(key))
    assert response.status_code == 403, response.content
    body = response.json()
    assert body["error"] == "token_scope" and "needs scope admin" in body["detail"]
    uses = list(TokenUse.objects.order_by("origin_seq").values_list("method", "path", "status", "username"))
    assert uses == [
        ("GET", "/api/v1/alarm-definitions/", 200, "erin"),
        ("POST", "/api/v1/alarm-definitions/", 403, "erin"),
    ]


def test_an_admin_token_changes_the_configuration_with_its_users_permissions(users, definitions, anonymous):
    response = anonymous.post("/api/v1/alarm-definitions/", DEFINITION, **bearer(token_for(users["engineer"], "admin")))
    assert response.status_code == 201, response.content
    # A viewer's admin token is still a viewer's: the scope narrows, it never grants.
    response = anonymous.post(
        "/api/v1/alarm-definitions/", {**DEFINITION, "limit": 31.0}, **bearer(token_for(users["viewer"], "admin"))
    )
    assert response.status_code == 403 and response.json()["error"] == "forbidden"


def test_a_write_token_acts_on_alarms_but_does_not_configure(users, definitions, anonymous):
    key = token_for(users["operator"], "write")
    response = anonymous.post("/api/v1/alarms/acknowledge", {"alarms": ["fan_failed"]}, **bearer(key))
    assert response.status_code not in (401, 403), response.content  # past authentication (no engine runs here)
    response = anonymous.post("/api/v1/alarm-definitions/", DEFINITION, **bearer(key))
    assert response.status_code == 403 and response.json()["error"] == "token_scope"


@pytest.mark.parametrize(
    ("spoil", "code"),
    [
        (lambda key, token: "bms_nothing", "token_invalid"),
        (lambda key, token: key[:-1] + ("A" if key[-1] != "A" else "B"), "token_invalid"),
        (
            lambda key, token: ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now()) and key,
            "token_revoked",
        ),
        (
            lambda key, token: ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now()) and key,
            "token_expired",
        ),
        (
            lambda key, token: User.objects.filter(pk=token.user_id).update(is_active=False) and key,
            "token_user_inactive",
        ),
    ],
)
def test_a_token_that_cannot_be_used_is_refused_with_why_and_records_nothing(users, points, anonymous, spoil, code):
    issued = issue(users["engineer"], "script", "read", 30, by=users["engineer"])
    audit_rows = AuditEntry.objects.count()
    key = spoil(issued.key, issued.token)
    response = anonymous.get("/api/v1/alarm-definitions/", **bearer(key))
    assert response.status_code == 401, response.content
    assert response.json()["error"] == code
    assert response["WWW-Authenticate"]  # a 401, not a 403
    assert not TokenUse.objects.exists()
    assert AuditEntry.objects.count() == audit_rows


def test_only_the_hash_is_stored_and_making_and_revoking_are_audited(users):
    issued = issue(users["operator"], "report", "read", 7, by=users["administrator"])
    secret = issued.key.split("_", 2)[2]
    row = ApiToken.objects.filter(pk=issued.token.pk).values().get()
    assert all(secret not in str(value) for value in row.values())
    assert (issued.token.expires_at - timezone.now()) > timedelta(days=6.9)
    created = AuditEntry.objects.get(action="token.created")
    assert created.username == "ada" and created.detail["owner"] == "otto" and secret not in str(created.detail)


@pytest.mark.parametrize(
    ("name", "scope", "days", "message"),
    [("", "read", 30, "name the token"), ("x", "root", 30, "invalid choice"), ("x", "read", 0, "from 1 to 366 days")],
)
def test_the_command_refuses_bad_requests_with_a_clear_message(users, name, scope, days, message):
    with pytest.raises(CommandError, match=message):
        call_command("apitoken", "create", "--user", "otto", "--name", name, "--scope", scope, "--days", str(days))
    with pytest.raises(CommandError, match="there is no user"):
        call_command("apitoken", "create", "--user", "nobody-here", "--name", "x")
    assert not ApiToken.objects.exists()


def test_the_command_makes_lists_and_revokes(users, points, anonymous):
    out = io.StringIO()
    call_command(
        "apitoken", "create", "--user", "otto", "--name", "cron", "--scope", "write", stdout=out, stderr=io.StringIO()
    )
    key = out.getvalue().strip()
    assert anonymous.get("/api/v1/alarms/", **bearer(key)).status_code in (200, 503)
    listing = io.StringIO()
    call_command("apitoken", "list", stdout=listing)
    prefix = key.split("_")[1]
    assert f"bms_{prefix}" in listing.getvalue() and key not in listing.getvalue()
    call_command("apitoken", "revoke", f"bms_{prefix}", stdout=io.StringIO())
    assert anonymous.get("/api/v1/alarms/", **bearer(key)).json()["error"] == "token_revoked"
    with pytest.raises(CommandError, match="already revoked"):
        call_command("apitoken", "revoke", prefix)
    assert AuditEntry.objects.get(action="token.revoked").username == "manage.py"


def test_the_web_page_shows_a_new_key_once_and_revokes_only_own_tokens(users):
    browser = Client()
    browser.login(username="otto", password=PASSWORD)
    page = browser.post("/account/tokens/", {"name": "energy report", "scope": "read", "days": "30"})
    assert page.status_code == 200
    token = ApiToken.objects.get(user__username="otto")
    assert b'id="token-key">bms_' + token.prefix.encode() in page.content
    again = browser.get("/account/tokens/")
    assert b"token-key" not in again.content and b"energy report" in again.content
    refused = browser.post("/account/tokens/", {"name": "", "scope": "read", "days": "30"})
    assert refused.status_code == 400 and b"name the token" in refused.content
    assert ApiToken.objects.count() == 1
    theirs = issue(users["engineer"], "theirs", "read", 30, by=users["engineer"]).token
    assert browser.post(f"/account/tokens/{theirs.pk}/revoke").status_code == 404
    assert browser.post(f"/account/tokens/{token.pk}/revoke").status_code == 302
    token.refresh_from_db()
    theirs.refresh_from_db()
    assert token.state() == "revoked" and theirs.state() == "active"


def test_tokens_travel_with_the_configuration_to_the_standby(users):
    issued = issue(users["operator"], "cron", "write", 30, by=users["operator"])
    dump = configsync.dump_config()
    assert [row["prefix"] for row in dump["api_tokens"]] == [issued.token.prefix]
    digest = configsync.hash_dump(dump)
    ApiToken.objects.all().delete()  # the standby's own tables, before the active node's dump arrives
    assert configsync.apply_config(dump) == digest
    assert ApiToken.objects.get().digest == issued.token.digest


def test_the_schema_names_the_token_scheme(as_role, users):
    schema = as_role("viewer").get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    assert schema["components"]["securitySchemes"]["tokenAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["tokenAuth"]["description"],
    }
