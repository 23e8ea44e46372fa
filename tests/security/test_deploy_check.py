"""Production settings: `check --deploy` has nothing to warn of; TLS is switchable for a node behind a TLS proxy.

Finding (issue 13): `check --deploy` warned four times (no HSTS, no SSL redirect, cookies not Secure) and there
was no SECURE_PROXY_SSL_HEADER.
"""

from __future__ import annotations

import json

import pytest

from tests.security.conftest import manage, production_env

DUMP = (
    "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k, None) for k in ["
    "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', 'SECURE_SSL_REDIRECT', "
    "'SECURE_HSTS_SECONDS', 'SECURE_PROXY_SSL_HEADER', 'SILENCED_SYSTEM_CHECKS', 'BMS_DEMO_ACCOUNTS']}))"
)


def settings_of(**env: str) -> dict:
    result = manage("shell", "-c", DUMP, env=production_env(**env))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_prints_no_warning_under_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_production_defaults_are_https_only():
    values = settings_of()
    assert values["SESSION_COOKIE_SECURE"] and values["CSRF_COOKIE_SECURE"] and values["SESSION_COOKIE_HTTPONLY"]
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 31536000
    assert values["SECURE_PROXY_SSL_HEADER"] is None  # trusted only when told: a client could send the header
    assert values["BMS_DEMO_ACCOUNTS"] is False


def test_behind_a_tls_proxy_that_redirects_and_sets_hsts_itself():
    env = {"BMS_PROXY_SSL_HEADER": "X-Forwarded-Proto", "BMS_SSL_REDIRECT": "0", "BMS_HSTS_SECONDS": "0"}
    values = settings_of(**env)
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["SECURE_SSL_REDIRECT"] is False and values["SECURE_HSTS_SECONDS"] == 0
    assert values["SESSION_COOKIE_SECURE"] is True  # the browser still speaks HTTPS (to the proxy)
    # turned off on purpose (the proxy does it): the deploy check is told, and stays quiet
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env(**env))
    assert result.returncode == 0, result.stdout + result.stderr


def test_plain_http_is_possible_and_the_deploy_check_says_so():
    """BMS_SECURE_TRANSPORT=0 (a lab, the compose pair on localhost): nothing is silenced, the check warns."""
    values = settings_of(BMS_SECURE_TRANSPORT="0")
    assert not values["SESSION_COOKIE_SECURE"] and not values["SECURE_SSL_REDIRECT"]
    assert values["SILENCED_SYSTEM_CHECKS"] == []
    result = manage("check", "--deploy", env=production_env(BMS_SECURE_TRANSPORT="0"))
    output = result.stdout + result.stderr
    assert "security.W012" in output and "security.W008" in output


@pytest.mark.django_db
def test_plain_http_health_probes_are_not_redirected(client, settings):
    """Load balancers probe /healthz over HTTP inside the site network: a redirect would read as down."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz(/active)?$"]
    assert client.get("/healthz").status_code in (200, 503)
    assert client.get("/login/").status_code == 301
    assert client.get("/login/", headers={"X-Forwarded-Proto": "https"}).status_code == 301  # not trusted
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert client.get("/login/", headers={"X-Forwarded-Proto": "https"}).status_code == 200
