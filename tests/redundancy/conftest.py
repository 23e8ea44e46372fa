"""Fixtures of the redundancy tests that play one node of a pair in this process (see pairweb)."""

from tests.redundancy.pairweb import as_backup, as_main, engineer, operator  # noqa: F401
