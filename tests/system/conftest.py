"""The system suite: one simulator and one node (Daphne + engine, PostgreSQL, Redis) for the session."""

from tests.support.fixtures import node, simulator  # noqa: F401
from tests.support.pair_fixtures import make_pair, pair_device, pair_template  # noqa: F401
