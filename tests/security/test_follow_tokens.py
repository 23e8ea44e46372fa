"""Follow tokens (issue 13, item 4): single-use, good only on the partner, void once their session logs out.

Finding: a follow token still logged in on the partner after logout (and could be used again and again within
its hour). The node under test plays ``backup``; tokens are made as ``main`` would make them.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from bms.accounts.models import VoidFollowToken
from redundancy import follow, history


@pytest.fixture
def operator(db) -> User:
    return User.objects.create_user("op", password="op-pass-12345")


@pytest.fixture
def main_browser(as_backup, operator, settings):
    """A browser logged in on ``main``; ``token()`` fetches a follow token there the way pages do."""
    browser = Client()
    browser.force_login(operator)

    def token() -> str:
        settings.BMS_NODE_NAME = "main"
        try:
            response = browser.get("/redundancy/follow-token")
            assert response.status_code == 200
            return response.json()["token"]
        finally:
            settings.BMS_NODE_NAME = "backup"

    browser.token = token
    return browser


def follow_on_backup(token: str) -> str | None:
    """Open the follow link in a fresh browser on this node (backup); the user it is logged in as, if any."""
    browser = Client()
    response = browser.get("/redundancy/follow", {"token": token, "next": "/events/"})
    assert response.status_code == 302
    if response["Location"] != "/events/":
        return None
    return browser.get("/api/redundancy/status").wsgi_request.user.username


def test_a_token_logs_in_once_only(main_browser):
    token = main_browser.token()
    assert follow_on_backup(token) == "op"
    assert follow_on_backup(token) is None  # replayed (from a log, a history, a proxy): refused
    with pytest.raises(follow.FollowRefused, match="used already"):
        follow.user_for_token(token)
    assert VoidFollowToken.objects.filter(reason=VoidFollowToken.USED).count() == 1


def test_a_token_is_refused_on_the_node_that_made_it(as_backup, operator):
    made_here = follow.make_token(operator, "some-session")  # as backup
    with pytest.raises(follow.FollowRefused, match="issued by this node"):
        follow.user_for_token(made_here)
    assert follow_on_backup(made_here) is None


def test_logging_out_voids_the_sessions_tokens(main_browser, settings):
    token = main_browser.token()
    settings.BMS_NODE_NAME = "main"
    main_browser.post("/logout/")  # on main
    settings.BMS_NODE_NAME = "backup"
    assert VoidFollowToken.objects.filter(reason=VoidFollowToken.LOGOUT).count() == 1
    assert follow_on_backup(token) is None
    with pytest.raises(follow.FollowRefused, match="session that logged out"):
        follow.user_for_token(token)


def test_logging_out_elsewhere_leaves_other_sessions_tokens_alone(main_browser, operator):
    token = main_browser.token()
    other = Client()
    other.force_login(operator)
    other.post("/logout/")
    assert follow_on_backup(token) == "op"


def test_a_password_change_voids_every_token(main_browser, operator):
    token = main_browser.token()
    operator.set_password("another-pass-12345")
    operator.save()
    assert follow_on_backup(token) is None


def test_void_tokens_replicate_like_history_both_ways(main_browser, settings):
    """The rows are history rows: the pair's history replication carries them to the other node."""
    assert "accounts.voidfollowtoken" in history.replicated_models()
    follow_on_backup(main_browser.token())
    batches, _ = history.rows_after({})
    sent = [batch for batch in batches if batch["table"] == "accounts.voidfollowtoken"]
    assert len(sent) == 1 and sent[0]["origin"] == "backup"
    # the partner recorded the same key (the same token redeemed there meanwhile): its row takes the place of
    # ours and the cursor moves on, instead of the row being ignored and sent again every round
    row = dict(zip(sent[0]["fields"], sent[0]["rows"][0], strict=True))
    incoming = {**sent[0], "origin": "main", "rows": [[{**row, "origin": "main"}[f] for f in sent[0]["fields"]]]}
    assert history.store_rows(incoming) == row["origin_seq"]
    assert list(VoidFollowToken.objects.values_list("origin", flat=True)) == ["main"]
