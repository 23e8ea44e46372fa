"""Sites: who sees which (users, tokens, superusers), a site still in use cannot vanish, and sites replicate."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db.models import ProtectedError

from bms.points.models import Device, Point
from bms.sites import scope
from bms.sites.models import DEFAULT_SITE, Site, SiteAccess, SiteGrant, TokenSite
from bms.tokens.services import issue
from redundancy import configsync

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_sites():
    north = Site.objects.create(name="north", title="North wing")
    south = Site.objects.create(name="south")
    for site in (north, south):
        device = Device.objects.create(name=f"{site.name}_plc", host="127.0.0.1", port=1502, site=site)
        Point.objects.create(device=device, name=f"{site.name}_temp", address="hr:0", data_type="int16")
    return north, south


def restricted(name: str, *sites: Site) -> User:
    user = User.objects.create_user(name, password="x" * 12)
    access = SiteAccess.objects.create(user=user, all_sites=False)
    for site in sites:
        SiteGrant.objects.create(access=access, site=site)
    return user


def test_a_device_made_without_a_site_belongs_to_the_default_site():
    device = Device.objects.create(name="plain", host="127.0.0.1", port=1502)
    assert device.site.name == DEFAULT_SITE


def test_users_see_every_site_unless_restricted_and_a_token_only_narrows(two_sites):
    north, south = two_sites
    everyone = User.objects.create_user("everyone", password="x" * 12)
    assert scope.site_ids(everyone) is scope.ALL
    boss = User.objects.create_user("boss", password="x" * 12)
    SiteAccess.objects.create(user=boss, all_sites=True)
    assert scope.site_ids(boss) is scope.ALL

    north_only = restricted("north-only", north)
    assert scope.site_ids(north_only) == {north.pk}
    assert scope.visible_point_names(scope.site_ids(north_only)) == {"north_temp"}
    assert scope.site_ids(restricted("nowhere")) == frozenset()

    # A token narrowed to a site its user does not see sees nothing (never more than the user).
    token = issue(north_only, "script", "read", 30, by=north_only).token
    TokenSite.objects.create(token=token, site=south)
    assert scope.site_ids(north_only, token) == frozenset()
    wide_token = issue(everyone, "script", "read", 30, by=everyone).token
    TokenSite.objects.create(token=wide_token, site=south)
    assert scope.site_ids(everyone, wide_token) == {south.pk}

    inactive = restricted("gone", north)
    inactive.is_active = False
    assert scope.site_ids(inactive) == frozenset()


def test_a_site_still_granted_or_owning_devices_cannot_be_deleted(two_sites):
    north, _south = two_sites
    with pytest.raises(ProtectedError):
        north.delete()  # owns a device
    Device.objects.filter(site=north).delete()
    restricted("north-only", north)
    with pytest.raises(ProtectedError):
        north.delete()  # still granted: deleting it would widen nobody, but the grant must go first
    SiteGrant.objects.filter(site=north).delete()
    north.delete()


def test_sites_and_grants_travel_with_the_configuration_and_a_site_gone_on_the_active_goes_here(two_sites):
    north, south = two_sites
    user = restricted("north-only", north)
    token = issue(user, "script", "read", 30, by=user).token
    TokenSite.objects.create(token=token, site=north)
    dump = configsync.dump_config()
    assert [row["name"] for row in dump["sites"]] == sorted(
        ["north", "south"] + ([DEFAULT_SITE] if Site.objects.filter(name=DEFAULT_SITE).exists() else [])
    )
    expected = configsync.hash_dump(dump)

    # This node drifted: a local site that owns a device and is granted, a grant removed.
    stray = Site.objects.create(name="stray")
    Device.objects.create(name="stray_plc", host="127.0.0.1", port=1, site=stray)
    SiteGrant.objects.create(access=user.site_access, site=stray)
    SiteGrant.objects.filter(site=north).delete()
    Site.objects.filter(pk=south.pk).update(title="renamed here")
    assert configsync.config_hash() != expected

    assert configsync.apply_config(dump) == expected
    assert not Site.objects.filter(name="stray").exists()
    assert scope.site_ids(User.objects.get(username="north-only")) == {north.pk}
    assert scope.site_ids(user, token) == {north.pk}
    assert Site.objects.get(pk=south.pk).title == ""


def test_a_dump_from_a_partner_without_sites_leaves_this_nodes_sites_alone(two_sites):
    dump = configsync.dump_config()
    for key in ("sites", "site_access", "site_grants", "token_sites"):
        dump.pop(key)
    configsync.apply_config(dump)
    assert set(Site.objects.values_list("name", flat=True)) >= {"north", "south"}
