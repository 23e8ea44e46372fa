"""The engine's configuration read on PostgreSQL, whose server ends sessions left idle in a transaction."""

import time

import pytest
from django.db import connection

from bms.engine import store

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_configuration_read_that_pauses_between_its_reads_outlasts_the_servers_idle_limit(monkeypatch):
    # Production connections carry idle_in_transaction_session_timeout = 30 s (SILENT_DATABASE_LIMITS). The
    # configuration read parses every rule between two of its reads; with 5,000 rules on a busy node that took
    # longer, the server ended the session, and every reload failed (bench/logic.py, 2 December 2026). Here the
    # limit is 1 s and the read pauses 1.5 s between its reads: it must still load.
    if connection.vendor != "postgresql":
        pytest.skip("the limit is PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute("SET idle_in_transaction_session_timeout = 1000")
    read_rules = store.read_rule_specs

    def slow_read_rules():
        time.sleep(1.5)  # Python work with no statement running: the session is idle in its transaction
        return read_rules()

    monkeypatch.setattr(store, "read_rule_specs", slow_read_rules)
    try:
        config = store.read_config()
        with connection.cursor() as cursor:  # the session survived, and its own limit is back after the commit
            cursor.execute("SHOW idle_in_transaction_session_timeout")
            assert cursor.fetchone()[0] == "1s"
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET idle_in_transaction_session_timeout")
    assert config.rules == ()
