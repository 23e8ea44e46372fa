"""What the configuration endpoints (sites, devices) share: the model's own checks on save, and 404 before 403.

:class:`CheckedModelSerializer` runs the model's ``full_clean()`` (its ``clean()`` and field validators) before
every save, so a device the admin would refuse is refused here too: a 400 ``invalid`` with the messages per field
(:mod:`bms.api.v1.errors` turns Django's ``ValidationError`` into one). :class:`LookupFirstMixin` looks an object up
before the permission check, so that a change to another site's object (or a missing one) is a 404 for everyone,
never a 403 that would confirm it exists.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from rest_framework.request import Request

from bms.api.v1.fields import StrictModelSerializer


class CheckedModelSerializer(StrictModelSerializer):
    """A strict model serializer whose ``create`` and ``update`` call the model's ``full_clean()`` before saving."""

    def create(self, validated_data: dict[str, Any]) -> models.Model:
        instance = self.Meta.model(**validated_data)
        instance.full_clean()
        instance.save()
        return instance

    def update(self, instance: models.Model, validated_data: dict[str, Any]) -> models.Model:
        for name, value in validated_data.items():
            setattr(instance, name, value)
        instance.full_clean()
        instance.save()
        return instance


class LookupFirstMixin:
    """On a view of one object, a logged-in caller's lookup comes before the permission check (404 before 403)."""

    def check_permissions(self, request: Request) -> None:
        user = request.user
        lookup = getattr(self, "lookup_url_kwarg", None) or getattr(self, "lookup_field", "pk")
        if user is not None and user.is_authenticated and lookup in self.kwargs:  # type: ignore[attr-defined]
            self.get_object()  # type: ignore[attr-defined]
        super().check_permissions(request)  # type: ignore[misc]
