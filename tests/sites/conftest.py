"""Fixtures of the site-scope tests: two sites, each with a device and points, and users restricted to one of them.

``north`` and ``south`` each own a Modbus device ``<site>_plc`` with a read-only
``<site>_temp`` and a writable ``<site>_setpoint``. ``north_users`` holds one user
per role restricted to ``north`` (``n_viewer``, ``n_operator``, ``n_engineer``,
``n_administrator``); ``everywhere`` is an engineer who sees every site. Every test
file under tests/sites/ tries the objects of ``south`` by id as a ``north`` user:
each must answer exactly as for an object that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.test import Client

from bms.points.models import Device, Point
from bms.sites.models import Site, SiteAccess, SiteGrant
from tests.api.conftest import PASSWORD, JsonClient, _roles_and_classes, _short_engine_waits, make_user  # noqa: F401

__all__ = ["PASSWORD", "JsonClient", "Sites", "make_user", "restrict", "staff"]


@dataclass
class Sites:
    north: Site
    south: Site


def staff(user: User) -> Client:
    """A test client logged in as ``user``, made staff (the admin's door) first."""
    User.objects.filter(pk=user.pk).update(is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def restrict(user: User, *sites: Site) -> User:
    """Make ``user`` see only ``sites``."""
    access, _ = SiteAccess.objects.update_or_create(user=user, defaults={"all_sites": False})
    access.grants.all().delete()
    for site in sites:
        SiteGrant.objects.create(access=access, site=site)
    return user


@pytest.fixture
def sites(db) -> Sites:
    north = Site.objects.create(name="north", title="North wing")
    south = Site.objects.create(name="south", title="South wing")
    for site, port in ((north, 15901), (south, 15902)):
        device = Device.objects.create(name=f"{site.name}_plc", host="127.0.0.1", port=port, site=site)
        Point.objects.create(device=device, name=f"{site.name}_temp", address="hr:0", data_type="int16", scale=0.1)
        Point.objects.create(
            device=device,
            name=f"{site.name}_setpoint",
            address="hr:1",
            data_type="int16",
            scale=0.1,
            writable=True,
            min_value=10,
            max_value=30,
        )
    return Sites(north, south)


@pytest.fixture
def north_users(sites: Sites) -> dict[str, User]:
    """One user per role, each restricted to ``north`` (keys: the role names)."""
    return {
        role: restrict(make_user(f"n_{role}", role), sites.north)
        for role in ("viewer", "operator", "engineer", "administrator")
    }


@pytest.fixture
def everywhere(sites: Sites) -> User:
    """An engineer who sees every site (no site access row)."""
    return make_user("all_engineer", "engineer")
