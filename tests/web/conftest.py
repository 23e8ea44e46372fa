"""Fixtures of the web manager's alarm pages: the default classes, an operator who may act on alarms, a viewer."""

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission, User

from tests.redundancy.pairweb import as_backup, as_main  # noqa: F401

_default_classes = importlib.import_module("bms.alarms.migrations.0002_default_alarm_classes")


@pytest.fixture(autouse=True)
def default_alarm_classes(request) -> None:
    """The classes the data migration creates: a transactional test elsewhere may have flushed them."""
    if "db" in request.fixturenames:
        request.getfixturevalue("db")
        _default_classes.create_classes(apps, None)


@pytest.fixture
def alarm_operator(db) -> User:
    """An operator who may acknowledge and shelve alarms."""
    user = User.objects.create_user("op", password="op-pass-123")
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="alarms", codename__in=["acknowledge_alarm", "shelve_alarm"])
    )
    return user


@pytest.fixture
def viewer(db) -> User:
    """A user with no permissions: may look, not act."""
    return User.objects.create_user("viewer", password="viewer-pass-1")
