"""What PostgreSQL's planner does with a query: for tests that pin an index's use (a plan, not a timing)."""

from __future__ import annotations

from django.db import connection


def plan_of(sql: str, params: list) -> str:
    """``EXPLAIN`` of ``sql`` with sequential scans discouraged: on a test's small table the question is which
    index the planner *can* use, not which it prefers for a few hundred rows."""
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            cursor.execute("EXPLAIN " + sql, params)
            return "\n".join(line for (line,) in cursor.fetchall())
        finally:
            cursor.execute("RESET enable_seqscan")
