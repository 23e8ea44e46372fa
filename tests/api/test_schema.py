"""The API describes itself: a valid OpenAPI schema without warnings, and documentation pages that load
nothing from outside the node.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.contrib.staticfiles import finders

from tests.api.conftest import JsonClient

ROOT = Path(__file__).resolve().parents[2]
#: an address outside the node: a scheme or a protocol-relative //host
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']\s*(?:[a-z][a-z0-9+.-]*:|//)""", re.IGNORECASE)
ASSETS = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def test_manage_spectacular_validates_without_errors_or_warnings(tmp_path):
    """What CI and a developer run: ``manage.py spectacular --validate --fail-on-warn``."""
    out = tmp_path / "schema.yaml"
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "bms.settings.test"},
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "Error" not in result.stderr, result.stderr
    schema = yaml.safe_load(out.read_text())
    assert schema["openapi"].startswith("3.")
    # every endpoint is in the schema (later functions add theirs: this is the floor, not the whole list)
    assert set(schema["paths"]) >= {
        "/api/v1/alarms/",
        "/api/v1/alarms/journal/",
        "/api/v1/alarms/acknowledge",
        "/api/v1/alarms/shelve",
        "/api/v1/alarms/unshelve",
        "/api/v1/alarm-definitions/",
        "/api/v1/alarm-definitions/{id}/",
        "/api/v1/alarm-definitions/{id}/out-of-service",
        "/api/v1/alarm-classes/",
        "/api/v1/alarm-classes/{id}/",
        "/api/v1/redundancy/status",
        "/api/v1/redundancy/switchover",
        "/api/v1/points/{name}/priority-array",
        "/api/v1/sites/",
        "/api/v1/sites/{id}/",
        "/api/v1/devices/",
        "/api/v1/devices/{id}/",
        "/api/v1/points/",
        "/api/v1/points/{name}/",
        "/api/v1/points/{name}/write",
        "/api/v1/points/{name}/relinquish",
        "/api/v1/commands/",
        "/api/v1/commands/{command_id}/",
        "/api/v1/events/",
        "/api/v1/audit/",
    }


@pytest.fixture
def schema(db) -> dict:
    response = JsonClient().get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_the_schema_documents_errors_parameters_and_session_login(schema):
    acknowledge = schema["paths"]["/api/v1/alarms/acknowledge"]["post"]
    assert set(acknowledge["responses"]) == {"200", "400", "401", "403", "503"}
    assert acknowledge["responses"]["403"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "detail"}
    live = {p["name"] for p in schema["paths"]["/api/v1/alarms/"]["get"]["parameters"]}
    assert live == {"state", "class", "area", "point", "priority_min", "priority_max", "limit", "offset"}
    journal = {p["name"] for p in schema["paths"]["/api/v1/alarms/journal/"]["get"]["parameters"]}
    assert journal == {
        "alarm",
        "point",
        "transition",
        "class",
        "area",
        "user",
        "time_from",
        "time_to",
        "limit",
        "offset",
    }
    limit = next(p for p in schema["paths"]["/api/v1/alarms/journal/"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 500
    assert schema["components"]["securitySchemes"]["sessionAuth"]["in"] == "cookie"
    definition = schema["components"]["schemas"]["AlarmDefinition"]["properties"]
    assert definition["class"]["type"] == "string" and definition["point"]["type"] == "string"


def test_the_schema_documents_the_core_endpoints(schema):
    """Writes document every answer of the command path; lists their filters; the 404 of another site's object."""
    paths = schema["paths"]
    write = paths["/api/v1/points/{name}/write"]["post"]
    assert set(write["responses"]) == {"200", "202", "400", "401", "403", "404", "409", "502", "503", "504"}
    assert set(paths["/api/v1/points/{name}/relinquish"]["post"]["responses"]) == set(write["responses"])
    parameters = {p["name"] for p in paths["/api/v1/points/"]["get"]["parameters"]}
    assert parameters == {"site", "device", "name", "writable", "limit", "offset"}
    assert {p["name"] for p in paths["/api/v1/devices/"]["get"]["parameters"]} >= {"site", "driver", "enabled"}
    assert {p["name"] for p in paths["/api/v1/events/"]["get"]["parameters"]} >= {
        "kind",
        "severity",
        "source",
        "time_from",
    }
    assert set(paths["/api/v1/audit/"]["get"]["responses"]) == {"200", "400", "401", "403"}
    assert set(paths["/api/v1/redundancy/switchover"]["post"]["responses"]) == {"202", "401", "403", "409", "503"}
    for path in ("/api/v1/points/{name}/", "/api/v1/commands/{command_id}/", "/api/v1/devices/{id}/"):
        assert "404" in paths[path]["get"]["responses"], path
    live = schema["components"]["schemas"]["Point"]["properties"]["live"]
    assert live["nullable"] is True and live["allOf"] == [{"$ref": "#/components/schemas/LiveState"}]


def local_assets(html: str) -> list[str]:
    return [url for url in ASSETS.findall(html) if not url.startswith("#")]


@pytest.mark.parametrize("path", ["/api/v1/docs/", "/api/v1/redoc/"])
def test_documentation_pages_load_nothing_from_outside(db, path):
    response = JsonClient().get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" in html
    assert not EXTERNAL.findall(html), EXTERNAL.findall(html)
    assert "googleapis" not in html and "jsdelivr" not in html
    assets = [url for url in local_assets(html) if url.startswith(settings.STATIC_URL) or url.startswith("/static/")]
    assert assets, html
    for url in assets:
        assert finders.find(url.split("/static/", 1)[1]), f"{url} is not a static file of this node"


def test_swagger_ui_start_script_is_served_by_the_node(db):
    page = JsonClient().get("/api/v1/docs/").content.decode()
    script = next(url for url in local_assets(page) if "script" in url)
    response = JsonClient().get(script.replace("&amp;", "&"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    text = response.content.decode()
    assert '"/api/v1/schema/"' in text
    assert "validatorUrl" in text and "://" not in text
