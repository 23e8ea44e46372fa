"""Two nodes on one Redis must not hear each other (channels_redis does not prefix named channels)."""

import pytest

from tests.support.processes import Node

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def second_node(simulator):
    other = Node(simulator.port, name="backup")
    # Make the second node's image tell-tale: it has no meter_power point.
    other.manage("shell", "-c", "from bms.points.models import Point; Point.objects.get(name='meter_power').delete()")
    try:
        other.start()
        yield other
    finally:
        other.drop()


def test_each_node_answers_only_its_own_snapshot_requests(node, second_node):
    first, second = node.session("viewer", "viewer-pass-1"), second_node.session("viewer", "viewer-pass-1")
    for _ in range(15):
        _, mine = first.get_json("/api/points/")
        _, theirs = second.get_json("/api/points/")
        assert mine["engine"] and theirs["engine"]
        assert {p["name"] for p in mine["points"] if p["live"]} >= {"meter_power", "zone1_temp"}
        assert "meter_power" not in {p["name"] for p in theirs["points"]}
        assert all(p["live"] for p in theirs["points"]), "a live state is missing: answered by the wrong engine?"
