"""The REST API's only body format: JSON, read with limits so that no body can make the server misbehave.

DRF's own JSON parser reads the whole stream whatever its size (Django's
``DATA_UPLOAD_MAX_MEMORY_SIZE`` guards ``request.body`` only), lets a deeply
nested document escape as ``RecursionError`` (a 500) and accepts any text
encoding. This one reads at most :data:`MAX_BODY_BYTES`, decodes UTF-8 only,
refuses ``NaN``/``Infinity``, integers of more than :data:`MAX_INTEGER_DIGITS`
digits and nesting deeper than :data:`MAX_DEPTH`, each with a 400 (413 for
the size) that says which.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from bms.api.v1.exceptions import PayloadTooLarge

#: the largest body read (bytes); DATA_UPLOAD_MAX_MEMORY_SIZE if it is smaller
MAX_BODY_BYTES = 1024 * 1024
#: objects and arrays inside each other, at most
MAX_DEPTH = 20
#: digits of one integer, at most (Python's own limit is 4300, far beyond any value a building has)
MAX_INTEGER_DIGITS = 30


class MalformedJSON(ValueError):
    """A body :func:`loads` refuses; the message says why, for the client (a 400)."""


def _refuse_constant(name: str) -> Any:
    raise MalformedJSON(f"JSON parse error: {name} is not a number JSON allows; send a finite number")


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise MalformedJSON(f"JSON parse error: a number of {digits} digits is too long (at most {MAX_INTEGER_DIGITS})")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_INTEGER_DIGITS + 30:
        raise MalformedJSON(f"JSON parse error: a number of {len(text)} characters is too long")
    return float(text)


def depth(value: Any) -> int:
    """How deeply ``value``'s objects and arrays nest (0 for a scalar), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level) for child in children)
    return deepest


def max_body_bytes() -> int:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return MAX_BODY_BYTES if limit is None else min(MAX_BODY_BYTES, limit)


def loads(raw: bytes) -> Any:
    """A JSON body, bounded in encoding, number length and depth (the size is the caller's: it reads the body).

    Every view that reads JSON uses this (the REST API through :class:`JSONParser`, the older ``/api/`` and the
    web manager's own JSON endpoints), so a deeply nested or huge-number body is a 400 everywhere, never a 500.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedJSON(f"JSON parse error: the body is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int, parse_float=_bounded_float)
    except RecursionError as exc:
        raise MalformedJSON(f"JSON parse error: the body is nested too deeply (at most {MAX_DEPTH} levels)") from exc
    except MalformedJSON:
        raise
    except ValueError as exc:  # json.JSONDecodeError is one
        raise MalformedJSON(f"JSON parse error: {exc}") from exc
    if depth(data) > MAX_DEPTH:
        raise MalformedJSON(f"JSON parse error: the body is nested too deeply (at most {MAX_DEPTH} levels)")
    return data


class JSONParser(parsers.JSONParser):
    """``application/json`` bodies, bounded in size, depth, number length and encoding."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = max_body_bytes()
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and str(declared).isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"The body of {int(declared)} bytes is larger than the {limit} bytes the API reads.")
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"The body is larger than the {limit} bytes the API reads.")
        try:
            return loads(raw)
        except MalformedJSON as exc:
            raise ParseError(str(exc)) from exc
