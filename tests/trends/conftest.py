"""Fixtures of the trend tests: the storage upkeep runs afresh in every test (it is once a day per process)."""

from datetime import UTC, datetime, timedelta

import pytest

from bms.trends import storage


@pytest.fixture(autouse=True)
def upkeep_afresh():
    storage._upkept_on = None
    yield
    storage._upkept_on = None


@pytest.fixture
def now() -> datetime:
    """A fixed 'now' in the middle of an hour, so tests know which hour and partition each time falls in."""
    return datetime.now(UTC).replace(minute=30, second=0, microsecond=0) - timedelta(hours=6)
