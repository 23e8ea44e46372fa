"""The system suite: one simulator and one node (Daphne + engine, PostgreSQL, Redis) for the session."""

from tests.support.fixtures import node, simulator  # noqa: F401
