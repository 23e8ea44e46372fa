"""API tokens narrowed to sites when they are made: by the service, the web manager's token page and the command.

A narrowed token sees only its sites (its user's API answers shrink to them); a site the owner (or whoever makes
the token) does not see is refused in the very words a site that does not exist gets, and nothing is made.
"""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from bms.control.models import AuditEntry
from bms.sites.models import TokenSite
from bms.tokens.models import ApiToken
from bms.tokens.services import TokenRequestInvalid, issue
from tests.sites.conftest import JsonClient, Sites, make_user

TOKENS = "/account/tokens/"


def sites_seen_with(key: str) -> list[str]:
    """The site names ``GET /api/v1/sites/`` lists for a request with the token ``key``."""
    client = JsonClient()
    body = client.get("/api/v1/sites/", HTTP_AUTHORIZATION=f"Bearer {key}").json()
    return sorted(row["name"] for row in body["results"])


def narrowed_to(token: ApiToken) -> list[str]:
    return sorted(TokenSite.objects.filter(token=token).values_list("site__name", flat=True))


def test_a_token_made_for_some_sites_sees_only_those(sites: Sites, everywhere: User):
    issued = issue(everywhere, "north script", "read", 30, by=everywhere, sites=["north"])
    assert narrowed_to(issued.token) == ["north"]
    assert sites_seen_with(issued.key) == ["north"]
    wide = issue(everywhere, "every site", "read", 30, by=everywhere)
    assert narrowed_to(wide.token) == []
    assert {"north", "south"} <= set(sites_seen_with(wide.key))
    audit = AuditEntry.objects.get(action="token.created", target=f"bms_{issued.token.prefix}")
    assert audit.detail["sites"] == ["north"]
    assert "sites" not in AuditEntry.objects.get(action="token.created", target=f"bms_{wide.token.prefix}").detail


def test_a_site_the_owner_does_not_see_is_refused_like_a_missing_one(sites: Sites, north_users: dict[str, User]):
    owner = north_users["engineer"]
    before = ApiToken.objects.count()
    with pytest.raises(TokenRequestInvalid) as hidden:
        issue(owner, "script", "read", 30, by=owner, sites=["north", "south"])
    with pytest.raises(TokenRequestInvalid) as missing:
        issue(owner, "script", "read", 30, by=owner, sites=["north", "atlantis"])
    assert str(hidden.value) == str(missing.value).replace("atlantis", "south") == "there is no site named 'south'"
    assert ApiToken.objects.count() == before and not AuditEntry.objects.filter(action="token.created").exists()
    # its own site is fine
    assert narrowed_to(issue(owner, "script", "read", 30, by=owner, sites=["north"]).token) == ["north"]


def test_whoever_makes_the_token_must_see_its_sites_too(sites: Sites, north_users: dict[str, User], everywhere: User):
    maker = north_users["administrator"]
    with pytest.raises(TokenRequestInvalid, match="there is no site named 'south'"):
        issue(everywhere, "script", "read", 30, by=maker, sites=["south"])
    assert not ApiToken.objects.filter(user=everywhere).exists()


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_token_page_offers_the_users_sites_and_narrows_the_token(sites: Sites, north_users: dict[str, User]):
    user = north_users["operator"]
    client = logged_in(user)
    page = client.get(TOKENS)
    assert page.status_code == 200
    assert re.findall(r'name="sites" value="([^"]+)"', page.content.decode()) == ["north"]
    assert b"south" not in page.content.lower()
    made = client.post(TOKENS, {"name": "meter script", "scope": "read", "days": "30", "sites": ["north"]})
    assert made.status_code == 200
    token = ApiToken.objects.get(user=user, name="meter script")
    assert narrowed_to(token) == ["north"]
    key = re.search(r'<pre id="token-key">([^<]+)</pre>', made.content.decode()).group(1)
    assert sites_seen_with(key) == ["north"]
    assert re.search(r'<td class="sites">north</td>', made.content.decode())
    # an unrestricted user is offered every site, and a token of no site is "all"
    wide = logged_in(make_user("wide_op", "operator"))
    offered = re.findall(r'name="sites" value="([^"]+)"', wide.get(TOKENS).content.decode())
    assert {"north", "south"} <= set(offered)
    listed = wide.post(TOKENS, {"name": "all", "scope": "read", "days": "30"}).content.decode()
    assert re.search(r'<td class="sites">all</td>', listed)


def test_the_token_page_refuses_another_site_like_a_missing_one(sites: Sites, north_users: dict[str, User]):
    client = logged_in(north_users["operator"])

    def refused(site: str) -> str:
        answered = client.post(TOKENS, {"name": "sneaky", "scope": "read", "days": "30", "sites": ["north", site]})
        assert answered.status_code == 400
        return " ".join(str(message) for message in answered.context["messages"])

    assert refused("south") == refused("atlantis").replace("atlantis", "south")
    assert "there is no site named 'south'" in refused("south")
    assert not ApiToken.objects.filter(name="sneaky").exists()


def test_the_command_narrows_a_token_to_repeated_sites(sites: Sites, everywhere: User, north_users: dict[str, User]):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "apitoken", "create", "--user", everywhere.username, "--name", "two", "--site", "north", "--site", "south",
        stdout=out, stderr=err,
    )  # fmt: skip
    token = ApiToken.objects.get(name="two")
    assert narrowed_to(token) == ["north", "south"]
    assert "sites north, south" in err.getvalue()
    assert sites_seen_with(out.getvalue().strip()) == ["north", "south"]
    listing = io.StringIO()
    call_command("apitoken", "list", "--user", everywhere.username, stdout=listing)
    assert "[sites: north, south]" in listing.getvalue()
    # a site its user does not see: as a site that does not exist
    owner = north_users["viewer"].username
    messages = []
    for site in ("south", "atlantis"):
        with pytest.raises(CommandError) as refused:
            call_command("apitoken", "create", "--user", owner, "--name", "x", "--site", site, stderr=io.StringIO())
        messages.append(str(refused.value).replace(site, "SITE"))
    assert messages[0] == messages[1] == "there is no site named 'SITE'"
    assert not ApiToken.objects.filter(name="x").exists()
