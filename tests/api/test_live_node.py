"""The alarms API of a real node (Daphne, engine, PostgreSQL, Redis) watching the simulated building:
a definition made through the API raises a real alarm that the API lists live, acknowledges, shelves,
unshelves, takes out of service, and finds in the journal; the documentation pages load from the node.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
import urllib.request
from typing import Any

import pytest

from bms.api.v1.alarms import STATES
from tests.support import services
from tests.support.processes import HttpSession, Node, wait_until
from tests.support.proxy import Proxy
from tests.system.test_live_websocket import write_device_register

pytestmark = pytest.mark.system

ALARM = "zone1_setpoint.high"
QUIET = "zone1_setpoint.low"
SETPOINT_REGISTER = 0  # zone1_setpoint, hr:0 float32
USERS = (("otto", "operator"), ("erin", "engineer"), ("vera", "viewer"))


@pytest.fixture(scope="module")
def sessions(node: Node) -> dict[str, HttpSession]:
    """A logged-in HTTP session per role, users made in the node's own database."""
    script = "; ".join(
        f"User.objects.create_user({name!r}, password='pass-{name}-1').groups.add(Group.objects.get(name={role!r}))"
        for name, role in USERS
    )
    node.manage("shell", "-c", f"from django.contrib.auth.models import Group, User; {script}")
    return {role: node.session(name, f"pass-{name}-1") for name, role in USERS}


def get(session: HttpSession, path: str, **params: Any) -> tuple[int, dict]:
    query = urllib.parse.urlencode(params, doseq=True)
    return session.get_json(f"{path}?{query}" if query else path)


def live(session: HttpSession, **params: Any) -> dict[str, dict]:
    status, body = get(session, "/api/v1/alarms/", **params)
    assert status == 200, body
    return {alarm["name"]: alarm for alarm in body["results"]}


def live_state(session: HttpSession) -> str | None:
    """The alarm's display state, whatever it is (None: the engine does not hold it yet)."""
    alarm = live(session, state=",".join(STATES), point="zone1_setpoint").get(ALARM)
    return alarm["state"] if alarm else None


def journal(session: HttpSession, **params: Any) -> list[dict]:
    status, body = get(session, "/api/v1/alarms/journal/", alarm=ALARM, **params)
    assert status == 200, body
    return body["results"]


def test_an_alarm_made_through_the_api_is_raised_handled_and_journalled(node, simulator, sessions):
    engineer, operator, viewer = sessions["engineer"], sessions["operator"], sessions["viewer"]
    asyncio.run(write_device_register(simulator.port, SETPOINT_REGISTER, 21.0))
    for kind, limit in (("high", 25.0), ("low", 10.0)):
        definition = {"point": "zone1_setpoint", "kind": kind, "limit": limit, "class": "high", "area": "API test"}
        status, body = engineer.post_json("/api/v1/alarm-definitions/", definition)
        assert status == 201, body
    # both definitions held by the engine (each post is a configuration revision of its own, and a loaded host
    # can apply the first before the second is made): the filters below count on QUIET being there
    wait_until(
        lambda: live_state(viewer) == "normal" and QUIET in live(viewer, point="zone1_setpoint", state="normal"),
        15,
        0.2,
        f"the engine to load {ALARM} and {QUIET}",
    )

    asyncio.run(write_device_register(simulator.port, SETPOINT_REGISTER, 30.0))
    wait_until(lambda: live_state(viewer) == "active_unacked", 15, 0.2, f"{ALARM} to be raised")
    alarm = live(viewer, point="zone1_setpoint")[ALARM]
    assert (alarm["point"], alarm["class"], alarm["priority"], alarm["area"]) == (
        "zone1_setpoint",
        "high",
        300,
        "API test",
    )
    assert alarm["value"] == 30.0 and alarm["ack_required"] is True and alarm["alarm_state"] == "active_unacked"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", alarm["since"]), alarm["since"]
    # filters, on the engine's real answer
    assert QUIET not in live(viewer, point="zone1_setpoint"), "normal alarms are not listed by default"
    assert QUIET in live(viewer, point="zone1_setpoint", state="normal")
    assert ALARM in live(viewer, area="API test", **{"class": "high"}, priority_min=300, priority_max=300)
    assert ALARM not in live(viewer, **{"class": "low"})
    assert ALARM not in live(viewer, state="active_acked")

    status, body = viewer.post_json("/api/v1/alarms/acknowledge", {"alarms": [ALARM]})
    assert (status, body["error"], body["required"]) == (403, "forbidden", ["alarms.acknowledge_alarm"])

    status, body = operator.post_json("/api/v1/alarms/acknowledge", {"alarms": [ALARM, QUIET], "comment": "seen"})
    assert status == 200, body
    assert body["action"] == "acknowledge" and body["done"] == [ALARM]
    assert body["results"][0] == {"alarm": ALARM, "outcome": "done"}
    assert body["results"][1]["alarm"] == QUIET and body["results"][1]["outcome"] in ("unchanged", "refused")
    wait_until(lambda: live_state(viewer) == "active_acked", 10, 0.2, f"{ALARM} to be acknowledged")
    status, body = operator.post_json("/api/v1/alarms/acknowledge", {"alarms": [ALARM]})
    assert (status, body["unchanged"]) == (200, [ALARM]), "acknowledging again changes nothing"

    status, body = operator.post_json("/api/v1/alarms/shelve", {"alarms": [ALARM], "seconds": 600, "comment": "works"})
    assert (status, body["done"]) == (200, [ALARM]), body
    wait_until(lambda: live_state(viewer) == "shelved", 10, 0.2, f"{ALARM} to be shelved")
    shelved = live(viewer, state="shelved")[ALARM]
    assert shelved["shelved_by"] == "otto" and shelved["shelved_until"]

    status, body = operator.post_json("/api/v1/alarms/unshelve", {"alarms": [ALARM]})
    assert (status, body["done"]) == (200, [ALARM]), body
    wait_until(lambda: live_state(viewer) not in (None, "shelved"), 10, 0.2, f"{ALARM} to be unshelved")

    status, listing = get(viewer, "/api/v1/alarm-definitions/", point="zone1_setpoint", kind="high")
    definition_id = listing["results"][0]["id"]
    status, body = operator.post_json(
        f"/api/v1/alarm-definitions/{definition_id}/out-of-service", {"out_of_service": True}
    )
    assert (status, body["required"]) == (403, ["alarms.set_out_of_service"])
    status, body = engineer.post_json(
        f"/api/v1/alarm-definitions/{definition_id}/out-of-service", {"out_of_service": True, "comment": "sensor work"}
    )
    assert (status, body["out_of_service"], body["out_of_service_by"]) == (200, True, "erin"), body
    wait_until(lambda: live_state(viewer) == "out_of_service", 15, 0.2, f"{ALARM} to be out of service")

    def transitions() -> list[str]:
        return [row["transition"] for row in reversed(journal(viewer))]

    wanted = ["raised", "acknowledged", "shelved", "unshelved", "out_of_service"]
    wait_until(lambda: all(kind in transitions() for kind in wanted), 15, 0.2, "the journal rows")
    rows = {row["transition"]: row for row in journal(viewer)}
    assert (rows["acknowledged"]["user"], rows["acknowledged"]["comment"]) == ("otto", "seen")
    assert (rows["shelved"]["user"], rows["shelved"]["comment"]) == ("otto", "works")
    assert rows["raised"]["value"] == 30.0 and rows["raised"]["class"] == "high" and rows["raised"]["node"] == "main"
    assert [row["transition"] for row in journal(viewer, transition="acknowledged,shelved", user="otto")] == [
        "shelved",
        "acknowledged",
    ]
    asyncio.run(write_device_register(simulator.port, SETPOINT_REGISTER, 21.0))


def test_documentation_and_its_assets_are_served_by_the_node(node):
    for page in ("/api/v1/docs/", "/api/v1/redoc/"):
        html = urllib.request.urlopen(f"{node.base_url}{page}", timeout=10).read().decode()
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert assets and all(url.startswith("/") and not url.startswith("//") for url in assets), assets
        for url in assets:
            with urllib.request.urlopen(f"{node.base_url}{url}", timeout=10) as response:
                assert response.status == 200 and response.read(), url
    with urllib.request.urlopen(f"{node.base_url}/api/v1/schema/?format=json", timeout=10) as response:
        assert b'"openapi"' in response.read()


def test_json_errors_through_daphne(node, sessions):
    status, body = sessions["viewer"].get_json("/api/v1/no-such-endpoint/")
    assert (status, body["error"]) == (404, "not_found")
    status, body = sessions["operator"].post_json("/api/v1/alarms/shelve", {"alarms": ["nope"], "seconds": "1"})
    assert (status, body["error"]) == (400, "invalid")
    assert set(body["fields"]) == {"alarms", "seconds"}


def test_a_database_outage_is_a_json_503(simulator):
    """The node reaches PostgreSQL through a proxy the test cuts, as if the database host stopped."""
    proxy = Proxy(services.database_port())
    node = Node(simulator.port, poll_interval=0.5)
    try:
        node.env["DATABASE_URL"] = services.proxied_database_url(node.db_name, proxy.port)
        node.start()
        session = node.session("demo", "demo")
        assert session.get_json("/api/v1/alarms/journal/")[0] == 200
        proxy.cut()
        _, body = wait_until(
            lambda: (answer := session.get_json("/api/v1/alarms/journal/"))[0] == 503 and answer,
            15,
            0.2,
            "a 503 while the database is away",
        )
        assert body["error"] == "database_unavailable", body
        assert "database is unavailable" in body["detail"]
        proxy.restore()
        wait_until(lambda: session.get_json("/api/v1/alarms/journal/")[0] == 200, 30, 0.5, "the database back")
    finally:
        proxy.restore()
        node.drop()
        proxy.close()
