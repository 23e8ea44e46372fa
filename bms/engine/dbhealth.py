"""The engine's database may be away: which errors say so, and the exception its periodic callers wait on.

The engine keeps polling and publishing while its database is away (DESIGN:
nothing on the hot path waits for it). ``Engine.run_in_db`` reports every
call to an :class:`~bms.outage.OutageLog`, which logs the first failure of
an outage once and its end once, and raises :class:`DatabaseUnavailable` so
that periodic tasks wait quietly instead of logging a traceback each time.
"""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError

from bms.outage import OutageLog

#: errors that mean "the database cannot be reached or used", not "this query is wrong"
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)


class DatabaseUnavailable(Exception):
    """A database call failed because the database is away; the outage is already logged (once)."""


def database_outage_log(meanwhile: str, logger: logging.Logger) -> OutageLog:
    """The outage log of one process's database calls; ``meanwhile`` says what that process does without it."""
    return OutageLog("database unavailable", "database available again", meanwhile, logger)
