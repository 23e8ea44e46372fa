"""Strict JSON types for request bodies: a number is a number, a string a string, true is ``true``.

DRF's fields are lenient in ways an API that writes to a building should not
be: its string field takes ``42`` as ``"42"``, its number fields take
``"42"`` and ``true`` (as 1), its boolean field takes ``"yes"`` and ``1``.
These refuse a value of the wrong JSON type with a message naming both
types. :class:`StrictModelSerializer` uses them for every model field. Body
serializers (:class:`StrictSerializer`, :class:`StrictModelSerializer`) also
refuse a field they do not have, so that a misspelt ``"secnds"`` is a 400,
not a default silently used; read-only fields sent back are ignored. Query
parameters are text by nature and keep DRF's fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import models
from rest_framework import serializers


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class StrictCharField(serializers.CharField):
    """A JSON string only."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError(f"Expected a string, got {json_type(data)}.", code="invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON number that is whole (``5`` or ``5.0``), not a string or a boolean."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise serializers.ValidationError(f"Expected a whole number, got {json_type(data)}.", code="invalid")
        if isinstance(data, float) and not data.is_integer():
            raise serializers.ValidationError(f"Expected a whole number, got {data!r}.", code="invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A finite JSON number, not a string or a boolean."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise serializers.ValidationError(f"Expected a number, got {json_type(data)}.", code="invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false`` (or ``null`` where allowed), nothing else."""

    def to_internal_value(self, data: Any) -> bool | None:
        if data is None and self.allow_null:
            return None
        if not isinstance(data, bool):
            raise serializers.ValidationError(f"Expected true or false, got {json_type(data)}.", code="invalid")
        return data


class RejectUnknownFieldsMixin:
    """A body with a field the serializer does not have is refused, naming the fields it has."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            fields = self.fields  # type: ignore[attr-defined]
            unknown = sorted(str(name) for name in data if name not in fields)
            if unknown:
                known = ", ".join(name for name, field in fields.items() if not field.read_only)
                problems = {name[:60]: [f"Unknown field; use {known}."] for name in unknown[:10]}
                raise serializers.ValidationError(problems)
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """A body serializer that refuses fields it does not have."""


class StrictModelSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """A model serializer whose fields take only values of their own JSON type, and no field it does not have."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.SlugField: StrictCharField,
        models.FloatField: StrictFloatField,
        models.BooleanField: StrictBooleanField,
        models.IntegerField: StrictIntegerField,
        models.SmallIntegerField: StrictIntegerField,
        models.BigIntegerField: StrictIntegerField,
        models.PositiveIntegerField: StrictIntegerField,
        models.PositiveSmallIntegerField: StrictIntegerField,
        models.PositiveBigIntegerField: StrictIntegerField,
    }
