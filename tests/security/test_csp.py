"""The Content-Security-Policy (issue 13, item 4): on every page, scripts from this node's files only.

Finding: there was no Content-Security-Policy. The browser test (test_browser.py) shows every page still works
under it; these check the header and that no template carries inline script.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from django.test import Client

from tests.security.conftest import ROOT

PAGES = ["/login/", "/points/", "/alarms/", "/alarms/journal/", "/events/", "/redundancy/", "/admin/", "/api/v1/docs/"]
#: a <script> element without src, an inline event handler, a javascript: URL
INLINE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=\s*[\"']|javascript:", re.IGNORECASE)


def directives(policy: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_the_policy(path, make_user):
    browser = Client()
    user = make_user("ada", "administrator")
    user.is_staff = user.is_superuser = True
    user.save()
    if path != "/login/":
        browser.force_login(user)
    response = browser.get(path)
    assert response.status_code == 200
    policy = directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no CDN
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"] and policy["form-action"] == ["'self'"]
    assert response["X-Frame-Options"] == "DENY"


def test_no_template_has_inline_script():
    templates = [*(ROOT / "templates").rglob("*.html"), *(ROOT / "bms").rglob("templates/**/*.html")]
    offenders = {str(path.relative_to(ROOT)): INLINE.findall(path.read_text()) for path in templates}
    assert {path: found for path, found in offenders.items() if found} == {}
    assert len(templates) > 10


def test_the_partner_node_may_be_probed(monkeypatch):
    """Pages poll the partner's /healthz before following it (static/bms/follow.js): connect-src names it."""
    import bms.settings.base as base

    monkeypatch.setenv("BMS_PARTNER_URL", "https://backup.site.example:8443/")
    try:
        policy = importlib.reload(base).CONTENT_SECURITY_POLICY["DIRECTIVES"]
        assert policy["connect-src"] == ["'self'", "https://backup.site.example:8443"]
    finally:
        monkeypatch.delenv("BMS_PARTNER_URL")
        importlib.reload(base)


def test_static_scripts_are_files_of_this_node():
    scripts = list(Path(ROOT / "static" / "bms").glob("*.js"))
    assert scripts and all(
        "eval(" not in path.read_text() and "new Function" not in path.read_text() for path in scripts
    )
