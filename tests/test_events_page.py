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
