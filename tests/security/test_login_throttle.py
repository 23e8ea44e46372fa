"""Login throttling and lockout with django-axes (issue 13, item 4).

Finding: 100 wrong passwords in a row were all answered, with no throttling. Now the 6th failure of one user name
from one address is refused with 429 for the cool-off time, the right password included; the state is rows in
the database (it survives a restart), and other addresses are not locked out with it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone

from tests.security.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def attempt(password: str, address: str = "10.1.2.3", username: str = "otto", path: str = "/login/", **headers):
    browser = Client(REMOTE_ADDR=address, headers=headers)
    return browser.post(path, {"username": username, "password": password})


def test_a_hundred_wrong_passwords_are_throttled(make_user, settings):
    make_user("otto")
    statuses = [attempt(f"wrong-{n}").status_code for n in range(100)]
    limit = settings.AXES_FAILURE_LIMIT
    assert limit == 5
    assert statuses[: limit - 1] == [200] * (limit - 1)  # the form again, "did not match"
    assert set(statuses[limit:]) == {429}
    locked = attempt("wrong")
    assert b"Too many failed logins" in locked.content
    # while locked out, the right password does not help either (the attacker cannot tell it was right)
    assert attempt(PASSWORD).status_code == 429
    row = AccessAttempt.objects.get(username="otto")
    assert row.ip_address == "10.1.2.3" and row.failures_since_start >= 100


def test_the_lockout_is_per_address_and_user_name(make_user):
    """Someone failing from one machine cannot lock the operators out of theirs (during an incident)."""
    make_user("otto")
    for n in range(6):
        attempt(f"wrong-{n}", address="10.9.9.9")
    assert attempt(PASSWORD, address="10.9.9.9").status_code == 429
    assert attempt(PASSWORD, address="10.1.1.1").status_code == 302


def test_the_lockout_ends_after_the_cool_off(make_user):
    make_user("otto")
    for n in range(6):
        attempt(f"wrong-{n}")
    assert attempt(PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))  # the default 15 min passed
    assert attempt(PASSWORD).status_code == 302
    assert not AccessAttempt.objects.exists()  # a success resets the count


def test_the_admin_login_is_throttled_too(make_user):
    make_user("otto")
    statuses = [attempt(f"wrong-{n}", path="/admin/login/").status_code for n in range(8)]
    assert statuses[-1] == 429


def test_behind_trusted_proxies_the_forwarded_address_counts(make_user, settings):
    settings.BMS_TRUSTED_PROXIES = 1
    make_user("otto")
    for n in range(6):  # all through the proxy 10.0.0.1, from the client 192.0.2.7 (a spoofed entry before it)
        attempt(f"wrong-{n}", address="10.0.0.1", x_forwarded_for=f"1.1.1.{n}, 192.0.2.7")
    assert AccessAttempt.objects.get().ip_address == "192.0.2.7"
    assert attempt(PASSWORD, address="10.0.0.1", x_forwarded_for="192.0.2.7").status_code == 429
    assert attempt(PASSWORD, address="10.0.0.1", x_forwarded_for="192.0.2.8").status_code == 302


def test_a_huge_user_name_is_answered_not_crashed(make_user):
    """Finding: a 5000-character user name reached axes' 255-character column whole: a 500."""
    make_user("otto")
    for _ in range(6):
        assert attempt("wrong", username="x" * 5000).status_code in (200, 429)
    assert attempt("wrong", username="x" * 5000).status_code == 429  # still counted, as its first 255 characters
    assert AccessAttempt.objects.get().username == "x" * 255


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ("username=a%00b&password=x", {}),  # NUL in the user name
        ("username=otto&password=x&next=%2F%00", {}),  # NUL in another field: axes records the POST data
        ("username=otto&password=x", {"user_agent": "curl\x00"}),  # NUL in a header: axes records the user agent
        ("username=%ED%A0%80&password=x", {}),  # not UTF-8 (a lone surrogate): decoded with replacement
    ],
)
def test_odd_characters_in_a_login_give_400_not_500(make_user, body, headers):
    make_user("otto")
    browser = Client(REMOTE_ADDR="10.1.2.3", headers=headers)
    response = browser.post("/login/", body, content_type="application/x-www-form-urlencoded")
    assert response.status_code in (200, 400), response.status_code
    if "%00" in body or headers:
        assert response.status_code == 400 and b"NUL" in response.content
        assert not AccessAttempt.objects.exists()  # refused before anything was stored


def test_one_address_failing_on_and_on_keeps_a_bounded_row(make_user):
    """Axes appends each failure's POST data to the row: bounded now, however long the client keeps going."""
    make_user("otto")
    for n in range(40):
        Client(REMOTE_ADDR="10.1.2.3").post(
            "/login/", {"username": "otto", "password": "x", "next": "y" * 1000 + str(n)}
        )
    row = AccessAttempt.objects.get()
    assert row.failures_since_start == 40
    assert len(row.post_data) <= 4096  # 40 KB of POST data sent: the newest part kept
    assert row.post_data.count("---------") >= 3
