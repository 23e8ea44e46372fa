"""Follow tokens: a page moving to the other node logs the same user in there, and nothing else does."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import User
from django.core import signing
from django.test import Client

from redundancy import follow
from tests.redundancy.pairweb import SECRET


@pytest.fixture
def token(client, as_backup, operator, settings) -> str:
    """A token fetched the way pages fetch it, logged in, from the partner (a token is refused where it was made)."""
    client.force_login(operator)
    settings.BMS_NODE_NAME = "main"
    response = client.get("/redundancy/follow-token")
    settings.BMS_NODE_NAME = "backup"
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    body = response.json()
    assert body["max_age"] == 3600 and body["refresh"] == 600
    return body["token"]


def follow_with(token: str, next_path: str = "/events/") -> tuple[Client, str]:
    """Open the follow link in a browser that has no session here; return it and where it was sent."""
    other = Client()
    response = other.get("/redundancy/follow", {"token": token, "next": next_path})
    assert response.status_code == 302
    return other, response["Location"]


def logged_in_as(browser: Client) -> str | None:
    response = browser.get("/api/redundancy/status")
    return None if response.status_code == 401 else response.wsgi_request.user.username


def test_a_valid_token_logs_the_user_in_and_goes_on(token):
    browser, location = follow_with(token, "/points/?device=plant")
    assert location == "/points/?device=plant"
    assert logged_in_as(browser) == "op"


def test_the_token_does_not_depend_on_the_secret_key(token, settings):
    settings.SECRET_KEY = "the-other-node-has-its-own-secret-key"
    browser, _ = follow_with(token)
    assert logged_in_as(browser) == "op"


def test_an_expired_token_is_refused(as_backup, operator):
    class SignedLongAgo(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time()) - 13 * 3600)

    payload = {"uid": operator.pk, "u": "op", "p": follow._password_digest(operator, SECRET), "j": "x" * 32}
    payload |= {"s": "", "n": "main"}
    old = SignedLongAgo(key=SECRET, salt=follow.SALT).sign_object(payload, compress=True)
    with pytest.raises(follow.FollowRefused, match="expired"):
        follow.user_for_token(old)
    assert follow.user_for_token(old, max_age=14 * 3600) == operator  # well formed, only too old
    browser, location = follow_with(old, "/events/")
    assert location == "/login/?next=/events/"
    assert logged_in_as(browser) is None


def test_a_tampered_token_is_refused(token):
    body, sep, signature = token.rpartition(":")
    tampered = body + sep + ("A" if signature[0] != "A" else "B") + signature[1:]
    browser, location = follow_with(tampered)
    assert location.startswith("/login/")
    assert logged_in_as(browser) is None
    with pytest.raises(follow.FollowRefused, match="bad signature"):
        follow.user_for_token(tampered)


def test_a_token_of_another_pair_is_refused(as_backup, operator, settings):
    settings.BMS_SYNC_SECRET = "another-pair-secret-456789"
    settings.BMS_NODE_NAME = "main"
    foreign = follow.make_token(operator)
    settings.BMS_NODE_NAME = "backup"
    settings.BMS_SYNC_SECRET = SECRET
    browser, location = follow_with(foreign)
    assert location.startswith("/login/")
    assert logged_in_as(browser) is None


def test_a_password_change_voids_earlier_tokens(token, operator):
    operator.set_password("a-new-password-1")
    operator.save()
    with pytest.raises(follow.FollowRefused, match="password of 'op' changed"):
        follow.user_for_token(token)


def test_an_inactive_user_cannot_follow(token, operator):
    User.objects.filter(pk=operator.pk).update(is_active=False)
    browser, _ = follow_with(token)
    assert logged_in_as(browser) is None


@pytest.mark.parametrize(
    "next_path", ["https://evil.example/", "//evil.example/points/", "/\\evil.example", "javascript:alert(1)", ""]
)
def test_next_must_be_a_local_path(token, next_path):
    browser, location = follow_with(token, next_path)
    assert location == "/points/"
    assert logged_in_as(browser) == "op"


def test_the_token_endpoint_needs_a_login(client, as_backup):
    response = client.get("/redundancy/follow-token")
    assert response.status_code == 401


def test_no_tokens_without_a_pair_secret(client, settings, operator):
    settings.BMS_PARTNER_ADDRESS = ""
    settings.BMS_SYNC_SECRET = ""
    client.force_login(operator)
    assert client.get("/redundancy/follow-token").status_code == 404
    browser = Client()
    response = browser.get("/redundancy/follow", {"token": "x:y:z", "next": "/events/"})
    assert response["Location"].startswith("/login/")
