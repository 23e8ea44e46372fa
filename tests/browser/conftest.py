"""The browser suite has its own simulator and node, so its writes never meet the system suite's."""

from tests.support.fixtures import node, simulator  # noqa: F401
