"""The event log page: every logged-in user sees why points failed; anonymous users are sent to log in."""

from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import User

from bms.events.models import Event


def test_operators_see_the_latest_events_newest_first(client, db):
    User.objects.create_user("op", password="pw-123456")
    now = datetime.now(UTC)
    Event.objects.create(
        time=now - timedelta(minutes=5),
        kind="comm_lost",
        source="plant",
        severity="error",
        message="communication lost: cannot connect to 127.0.0.1:1502",
        origin="main",
    )
    Event.objects.create(
        time=now, kind="comm_restored", source="plant", severity="info", message="communication restored", origin="main"
    )
    client.login(username="op", password="pw-123456")
    page = client.get("/events/").content.decode()
    assert "cannot connect to 127.0.0.1:1502" in page
    assert page.index("communication restored") < page.index("communication lost")


def test_anonymous_users_are_sent_to_log_in(client, db):
    response = client.get("/events/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_a_restricted_users_page_reads_its_sources_events_by_index(db):
    # A user limited to some sites sees the events of their devices and points, newest first: without the
    # (source, time) index a quiet site's page read the whole log (34 ms at 200,000 events).
    from tests.support.explain import plan_of

    rows = Event.objects.filter(source__in=["ahu1", "ahu1_fan"])[:200]
    sql, params = rows.query.sql_with_params()
    assert "events_event_source_time" in plan_of(sql, list(params))
