"""Pages of a list: ``?limit=`` (default :data:`DEFAULT_LIMIT`, at most :data:`MAX_LIMIT`) and ``?offset=``.

Every list answers ``{"count", "next", "previous", "results"}``; ``next`` and
``previous`` are the URLs of the neighbouring pages (null at the ends). DRF's
own limit/offset pagination quietly replaces a bad ``limit`` by the default;
here a limit or offset that is not a whole number in range is a 400 that
says so, so that a client never takes a page for the whole list.
"""

from __future__ import annotations

from typing import Any

from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: an offset beyond this is certainly a mistake (and keeps the number small for the database)
MAX_OFFSET = 10_000_000


def _whole_number(request: Request, name: str, default: int, lowest: int, highest: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not text.isdigit() or len(text) > 12 or not lowest <= int(text) <= highest:
        raise ValidationError({name: [f"Give a whole number from {lowest} to {highest}, not {raw[:40]!r}."]})
    return int(text)


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """Limit/offset pages with a bounded page size and strict parameters."""

    default_limit = DEFAULT_LIMIT
    max_limit = MAX_LIMIT
    limit_query_description = f"How many results per page (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})."
    offset_query_description = "How many results to skip (the first page is offset 0)."

    def get_limit(self, request: Request) -> int:
        return _whole_number(request, self.limit_query_param, self.default_limit, 1, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return _whole_number(request, self.offset_query_param, 0, 0, MAX_OFFSET)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"].update({"minimum": 1, "maximum": self.max_limit, "default": self.default_limit})
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"].update({"minimum": 0, "maximum": MAX_OFFSET, "default": 0})
        return parameters
