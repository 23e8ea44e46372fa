"""Trend queries (issue 10 items 5 and 7): downsampled series from the right tier, and a streamed CSV export.

==========================================  ===============================================  ====================
``GET trends/?points=a,b&start=&end=``      per point, at most ``max_points`` buckets with   every logged-in user
                                            min, max, average, count and quality
``GET trends/csv?points=a,b&start=&end=``   the raw samples of the range as CSV, streamed    every logged-in user
==========================================  ===============================================  ====================

**Choosing the tier.** The range is cut into buckets of one width ``w``, the
smallest "round" width (1 s, 2 s, 5 s, ... 1 min, ... 1 h, 2 h, ... 1 day, 2
days, ...) that gives at most ``max_points`` buckets. Then:

* if every point has at most ``max_points`` raw samples in the range, the
  samples themselves are answered (``resolution: "raw"``, ``bucket_seconds:
  0``): nothing to downsample;
* else, if ``w`` is under an hour and the range holds at most
  :data:`RAW_SCAN_LIMIT` raw samples (all points), the raw samples are
  aggregated into buckets of ``w`` by the database (``"raw"``);
* else the hourly roll-ups (``w`` under a day, or raw too large) or the
  daily roll-ups are merged into buckets of ``w`` (``"hour"``, ``"day"``):
  a year of one point is 8,760 hourly rows, never its 525,600 samples.

Roll-ups are computed a little after their hour (day) ends, so the newest
part of a range, after the last rolled-up bucket, is read from the next finer
tier (the last :data:`TAIL_LIMIT` of it at most). Every bucket carries
``min`` and ``max`` (so a peak survives any downsampling), ``avg`` (the mean
of the samples), ``n`` (good samples) and ``quality``: ``good``, or a
non-good quality (the one with the highest code) when any sample of the
bucket was not good. A bucket with no good sample has ``min``/``max``/``avg``
null. Roll-ups count only good samples; which of their buckets also had
non-good samples is read from the raw tier (the non-good rows only), so
beyond the raw tier's retention roll-up buckets say ``good``.

A caller restricted to some sites (issue 13 item 3) charts and exports the points of those sites only: another
site's point is answered exactly like a point that does not exist (400 ``unknown_point``).

``t`` is the bucket's start (milliseconds since 1970 UTC), buckets are
aligned to multiples of ``w`` since 1970 (the same time always falls in the
same bucket, whatever the range), and the columns are parallel arrays (``t``,
``min``, ``max``, ``avg``, ``n``, ``quality``), which a chart takes as is.
"""

from __future__ import annotations

import csv
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bms.api.v1.alarms import MultiValueField, parse_query
from bms.api.v1.docs import error_responses
from bms.points.models import Point
from bms.sites.scope import points_in_sites, request_site_ids
from bms.trends.models import GOOD_CODE, QUALITY_NAMES
from bms.trends.storage import DAILY, HOURLY, RAW, Tier

#: the most points one query charts or exports
MAX_SERIES = 20
DEFAULT_MAX_POINTS = 1000
MIN_MAX_POINTS = 10
MAX_MAX_POINTS = 10_000
#: a range without ``start`` ends at ``end`` (default now) and lasts this long
DEFAULT_RANGE = timedelta(days=1)
#: the longest range one query covers
MAX_RANGE = timedelta(days=366 * 100)
#: raw samples (all points) the database aggregates for one query; beyond, the hourly roll-ups answer
RAW_SCAN_LIMIT = 200_000
#: the newest part of a range not yet rolled up is read from the finer tier, this much of it at most
TAIL_LIMIT = {"hour": timedelta(days=3), "day": timedelta(days=60)}
#: rows fetched per round trip by the CSV export
EXPORT_CHUNK_ROWS = 10_000
HOUR_S, DAY_S = 3600, 86400
#: bucket widths (seconds) below an hour, then hours that divide a day; beyond a day any whole number of days
NICE_SECONDS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1200, 1800)
NICE_HOURS = (1, 2, 3, 4, 6, 8, 12)
NICE_DAYS = (1, 2, 3, 7, 14, 28)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ---- the query --------------------------------------------------------------------------------------------------


class TrendQuerySerializer(serializers.Serializer):
    """What to chart: the points, the range (ISO 8601; without an offset UTC) and the most buckets per point."""

    points = MultiValueField(
        child=serializers.CharField(max_length=128),
        required=True,
        max_length=None,
        help_text=f"point names, separated by commas (or repeated); at most {MAX_SERIES}",
    )
    start = serializers.DateTimeField(required=False, help_text="from this time on (inclusive); default: end - 1 day")
    end = serializers.DateTimeField(required=False, help_text="before this time (exclusive); default: now")
    max_points = serializers.IntegerField(
        required=False,
        min_value=MIN_MAX_POINTS,
        max_value=MAX_MAX_POINTS,
        default=DEFAULT_MAX_POINTS,
        help_text=f"the most buckets per point (default {DEFAULT_MAX_POINTS}, at most {MAX_MAX_POINTS})",
    )

    def validate_points(self, names: list[str]) -> list[str]:
        if not names:
            raise ValidationError("Name at least one point.")
        if len(names) > MAX_SERIES:
            raise ValidationError(f"Name at most {MAX_SERIES} points in one query, not {len(names)}.")
        request = self.context.get("request")
        points = Point.objects.all() if request is None else points_in_sites(request_site_ids(request))
        known = set(points.filter(name__in=names).values_list("name", flat=True))
        unknown = [name for name in names if name not in known]  # another site's point among them
        if unknown:
            shown = ", ".join(repr(name) for name in unknown[:10])
            raise ValidationError(f"There is no point named {shown}.", code="unknown_point")
        return names

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        end = attrs.get("end") or timezone.now()
        start = attrs.get("start") or end - DEFAULT_RANGE
        if end <= start:
            raise ValidationError({"end": ["end must be after start."]})
        if end - start > MAX_RANGE:
            raise ValidationError({"start": [f"A range may last at most {MAX_RANGE.days} days."]})
        attrs["start"], attrs["end"] = start.astimezone(UTC), end.astimezone(UTC)
        return attrs


class ExportQuerySerializer(TrendQuerySerializer):
    """What to export: the points and the range (``max_points`` does not apply)."""

    max_points = None  # type: ignore[assignment]


class SeriesSerializer(serializers.Serializer):
    """One point's buckets as parallel arrays."""

    point = serializers.CharField()
    unit = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    t = serializers.ListField(child=serializers.IntegerField(), help_text="bucket start (raw: sample time), ms UTC")
    min = serializers.ListField(child=serializers.FloatField(allow_null=True))
    max = serializers.ListField(child=serializers.FloatField(allow_null=True))
    avg = serializers.ListField(child=serializers.FloatField(allow_null=True))
    n = serializers.ListField(child=serializers.IntegerField(), help_text="good samples in the bucket")
    quality = serializers.ListField(child=serializers.CharField(), help_text="good, or a non-good quality seen")


class TrendSerializer(serializers.Serializer):
    """The answer: the range, the tier and bucket width chosen, and one series per point (in the query's order)."""

    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    resolution = serializers.ChoiceField(choices=["raw", "hour", "day"], help_text="the tier read")
    bucket_seconds = serializers.IntegerField(help_text="bucket width; 0: the raw samples themselves")
    max_points = serializers.IntegerField()
    series = SeriesSerializer(many=True)


# ---- buckets ----------------------------------------------------------------------------------------------------


def epoch_seconds(when: datetime) -> float:
    return (when - _EPOCH).total_seconds()


def bucket_width(start: datetime, end: datetime, max_points: int) -> int:
    """The smallest round width (seconds) that cuts ``[start, end)`` into at most ``max_points`` aligned buckets."""
    # Aligned buckets: a range of (max_points - 1) widths touches at most max_points of them.
    least = (epoch_seconds(end) - epoch_seconds(start)) / max(max_points - 1, 1)
    for width in (*NICE_SECONDS, *(h * HOUR_S for h in NICE_HOURS), *(d * DAY_S for d in NICE_DAYS)):
        if width >= least:
            return width
    return math.ceil(least / DAY_S) * DAY_S


@dataclass(slots=True)
class Bucket:
    """One output bucket being merged from tier rows: min, max, sum and count of good values, worst quality."""

    minimum: float | None = None
    maximum: float | None = None
    total: float = 0.0
    count: int = 0
    quality: int = GOOD_CODE

    def add(self, minimum: float | None, maximum: float | None, total: float, count: int) -> None:
        if count <= 0 or minimum is None or maximum is None:
            return
        self.minimum = minimum if self.minimum is None else min(self.minimum, minimum)
        self.maximum = maximum if self.maximum is None else max(self.maximum, maximum)
        self.total += total
        self.count += count

    def mark(self, quality: int | None) -> None:
        if quality is not None and quality != GOOD_CODE:
            self.quality = max(self.quality, quality)


@dataclass(slots=True)
class Plan:
    """What one query reads: the tier, the bucket width, and the buckets found per point id."""

    resolution: str
    width: int
    buckets: dict[int, dict[int, Bucket]] = field(default_factory=dict)

    def bucket(self, point: int, at_seconds: float) -> Bucket:
        key = int(at_seconds // self.width) * self.width
        held = self.buckets.setdefault(point, {})
        found = held.get(key)
        if found is None:
            found = held[key] = Bucket()
        return found


def _ids(points: list[Point]) -> list[int]:
    return [point.pk for point in points]


def _limited_counts(ids: list[int], start: datetime, end: datetime, limit: int) -> dict[int, int]:
    """Raw samples per point in the range, counted up to ``limit + 1`` each (a bounded index range scan)."""
    counts = {}
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        for point in ids:
            cursor.execute(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM {RAW.table} WHERE point_id = %s AND time >= %s AND time < %s"
                " LIMIT %s) s",
                [point, adapt(start), adapt(end), limit + 1],
            )
            counts[point] = cursor.fetchone()[0]
    return counts


def _id_filter(ids: list[int]) -> tuple[str, list[Any]]:
    """``point_id IN (...)`` for any database, with its parameters."""
    return f"point_id IN ({', '.join(['%s'] * len(ids))})", list(ids)


def _raw_exact(ids: list[int], start: datetime, end: datetime) -> dict[int, list[tuple]]:
    """Every raw sample of the range per point, in time order: (ms, value, quality code)."""
    where, params = _id_filter(ids)
    adapt = connection.ops.adapt_datetimefield_value
    found: dict[int, list[tuple]] = {point: [] for point in ids}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT point_id, {_epoch_column('time')}, value, quality FROM {RAW.table}"
            f" WHERE {where} AND time >= %s AND time < %s ORDER BY point_id, time",
            [*params, adapt(start), adapt(end)],
        )
        for point, when, value, quality in cursor.fetchall():
            found[point].append((round(_as_epoch(when) * 1000), value, quality))
    return found


def _raw_into(plan: Plan, ids: list[int], start: datetime, end: datetime, non_good_only: bool = False) -> None:
    """Aggregate the raw samples of the range into the plan's buckets (by the database on PostgreSQL).

    ``non_good_only``: only mark the buckets' quality from the non-good samples (for roll-up tiers)."""
    if start >= end:
        return
    where, params = _id_filter(ids)
    adapt = connection.ops.adapt_datetimefield_value
    good = f"quality = {GOOD_CODE} AND value IS NOT NULL"
    if connection.vendor == "postgresql":
        if non_good_only:
            sql = (
                f"SELECT point_id, floor(extract(epoch FROM time) / %s)::bigint AS b, NULL, NULL, 0, 0, MAX(quality)"
                f" FROM {RAW.table} WHERE {where} AND time >= %s AND time < %s AND quality <> {GOOD_CODE}"
                " GROUP BY 1, 2"
            )
        else:
            sql = (
                f"SELECT point_id, floor(extract(epoch FROM time) / %s)::bigint AS b, MIN(value) FILTER (WHERE {good}),"
                f" MAX(value) FILTER (WHERE {good}), COALESCE(SUM(value) FILTER (WHERE {good}), 0),"
                f" COUNT(value) FILTER (WHERE {good}), MAX(quality) FILTER (WHERE quality <> {GOOD_CODE})"
                f" FROM {RAW.table} WHERE {where} AND time >= %s AND time < %s GROUP BY 1, 2"
            )
        with connection.cursor() as cursor:
            cursor.execute(sql, [plan.width, *params, adapt(start), adapt(end)])
            for point, key, minimum, maximum, total, count, quality in cursor.fetchall():
                bucket = plan.bucket(point, key * plan.width)
                bucket.add(minimum, maximum, float(total), int(count))
                bucket.mark(quality)
        return
    # SQLite (the embedded shape): the same in Python
    extra = f" AND quality <> {GOOD_CODE}" if non_good_only else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT point_id, time, value, quality FROM {RAW.table} WHERE {where} AND time >= %s AND time < %s{extra}",
            [*params, adapt(start), adapt(end)],
        )
        for point, when, value, quality in cursor.fetchall():
            bucket = plan.bucket(point, epoch_seconds(_aware(when)))
            if quality == GOOD_CODE and value is not None:
                bucket.add(value, value, value, 1)
            bucket.mark(quality)


def _epoch_column(column: str) -> str:
    """SQL for ``column`` as seconds since 1970 on PostgreSQL (far cheaper to read than datetimes), else as is."""
    return f"extract(epoch FROM {column})::float8" if connection.vendor == "postgresql" else column


def _as_epoch(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else epoch_seconds(_aware(value))


def _rollups_into(plan: Plan, tier: Tier, ids: list[int], start: datetime, end: datetime) -> datetime:
    """Merge the roll-up rows of ``tier`` in the range into the plan's buckets; where the tier's coverage ends.

    The returned time is the end of the last rolled-up bucket found (or ``start`` if none): the finer tier
    answers from there."""
    where, params = _id_filter(ids)
    adapt = connection.ops.adapt_datetimefield_value
    last: float | None = None
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT point_id, {_epoch_column('bucket')}, minimum, maximum, average, samples FROM {tier.table}"
            f" WHERE {where} AND bucket >= %s AND bucket < %s",
            [*params, adapt(start), adapt(end)],
        )
        for point, bucket_start, minimum, maximum, average, count in cursor.fetchall():
            at = _as_epoch(bucket_start)
            plan.bucket(point, at).add(minimum, maximum, average * count, count)
            if last is None or at > last:
                last = at
    width = HOUR_S if tier is HOURLY else DAY_S
    return start if last is None else _EPOCH + timedelta(seconds=last + width)


def _aware(value: Any) -> datetime:
    from bms.trends.storage import from_db_datetime

    return from_db_datetime(value)


def _floor(when: datetime, seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=int(epoch_seconds(when) // seconds) * seconds)


def query_series(points: list[Point], start: datetime, end: datetime, max_points: int) -> dict[str, Any]:
    """The answer of ``GET trends/`` for these points and range (see the module docstring for the rules)."""
    ids = _ids(points)
    width = bucket_width(start, end, max_points)
    counts = _limited_counts(ids, start, end, max_points)
    if all(count <= max_points for count in counts.values()):
        return _answer(points, start, end, max_points, "raw", 0, exact=_raw_exact(ids, start, end))
    if width < HOUR_S and sum(_limited_counts(ids, start, end, RAW_SCAN_LIMIT).values()) <= RAW_SCAN_LIMIT:
        plan = Plan("raw", width)
        _raw_into(plan, ids, start, end)
        return _answer(points, start, end, max_points, plan.resolution, width, plan=plan)
    if width < DAY_S:
        plan = Plan("hour", max(width, HOUR_S))
        cut = _rollups_into(plan, HOURLY, ids, _floor(start, HOUR_S), end)
    else:
        plan = Plan("day", width)
        day_cut = _rollups_into(plan, DAILY, ids, _floor(start, DAY_S), end)
        hour_from = max(day_cut, end - TAIL_LIMIT["day"])
        cut = _rollups_into(plan, HOURLY, ids, hour_from, end) if hour_from < end else end
        cut = max(cut, hour_from)
    # the newest part, not rolled up yet, from the raw samples; the older part's quality from the non-good samples
    raw_from = max(cut, end - TAIL_LIMIT["hour"])
    _raw_into(plan, ids, raw_from, end)
    raw_cutoff = RAW.cutoff(timezone.now())
    quality_from = start if raw_cutoff is None else max(start, raw_cutoff)
    _raw_into(plan, ids, quality_from, min(raw_from, end), non_good_only=True)
    return _answer(points, start, end, max_points, plan.resolution, plan.width, plan=plan)


def _answer(
    points: list[Point],
    start: datetime,
    end: datetime,
    max_points: int,
    resolution: str,
    width: int,
    plan: Plan | None = None,
    exact: dict[int, list[tuple]] | None = None,
) -> dict[str, Any]:
    series = []
    for point in points:
        columns: dict[str, list[Any]] = {"t": [], "min": [], "max": [], "avg": [], "n": [], "quality": []}
        if exact is not None:
            for ms, value, quality in exact.get(point.pk, []):
                good = quality == GOOD_CODE and value is not None
                columns["t"].append(ms)
                for name in ("min", "max", "avg"):
                    columns[name].append(value)
                columns["n"].append(1 if good else 0)
                columns["quality"].append(QUALITY_NAMES.get(quality, "bad"))
        elif plan is not None:
            buckets = plan.buckets.get(point.pk, {})
            for key in sorted(buckets):
                bucket = buckets[key]
                columns["t"].append(key * 1000)
                columns["min"].append(bucket.minimum)
                columns["max"].append(bucket.maximum)
                columns["avg"].append(bucket.total / bucket.count if bucket.count else None)
                columns["n"].append(bucket.count)
                columns["quality"].append(QUALITY_NAMES.get(bucket.quality, "bad"))
        series.append({"point": point.name, "unit": point.unit, "description": point.description, **columns})
    return {
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": end.isoformat().replace("+00:00", "Z"),
        "resolution": resolution,
        "bucket_seconds": width,
        "max_points": max_points,
        "series": series,
    }


def _points(names: list[str]) -> list[Point]:
    by_name = {point.name: point for point in Point.objects.filter(name__in=names).only("id", "name", "unit")}
    return [by_name[name] for name in names]


class TrendView(APIView):
    """Downsampled series of one or more points over a range."""

    @extend_schema(
        operation_id="trends_query",
        summary="Trend series (downsampled)",
        description=(
            "Per point, at most `max_points` buckets of the range from the right tier (raw samples, hourly or daily "
            "roll-ups), each with min, max, average, good-sample count and quality. See docs/trends.md."
        ),
        parameters=[TrendQuerySerializer],
        responses={200: TrendSerializer, **error_responses(400)},
        tags=["trends"],
    )
    def get(self, request: Request) -> Response:
        query = parse_query(request, TrendQuerySerializer)
        answer = query_series(_points(query["points"]), query["start"], query["end"], query["max_points"])
        return Response(answer)


# ---- the CSV export ---------------------------------------------------------------------------------------------

EXPORT_COLUMNS = ("time", "point", "value", "quality")


class _Line:
    """A file-like target for csv.writer that hands back the line just written."""

    def write(self, text: str) -> str:
        return text


def export_chunk(
    ids: list[int], names: dict[int, str], start: datetime, end: datetime, after: tuple[int, datetime] | None
) -> tuple[str, tuple[int, datetime] | None]:
    """The CSV text of the next :data:`EXPORT_CHUNK_ROWS` samples after ``after`` (point id, time) in (point, time)
    order, and where the next chunk starts (None: done). Keyset pagination on the primary key: no cursor is held
    between chunks, so a slow client holds no database resources."""
    where, params = _id_filter(ids)
    adapt = connection.ops.adapt_datetimefield_value
    sql = f"SELECT point_id, time, value, quality FROM {RAW.table} WHERE {where} AND time >= %s AND time < %s"
    values = [*params, adapt(start), adapt(end)]
    if after is not None:
        sql += " AND (point_id > %s OR (point_id = %s AND time > %s))"
        values += [after[0], after[0], adapt(after[1])]
    sql += " ORDER BY point_id, time LIMIT %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, EXPORT_CHUNK_ROWS])
        rows = cursor.fetchall()
    writer = csv.writer(_Line())
    lines = []
    for point, when, value, quality in rows:
        when = _aware(when)
        shown = "" if value is None else repr(float(value))
        lines.append(
            writer.writerow(
                [when.isoformat().replace("+00:00", "Z"), names[point], shown, QUALITY_NAMES.get(quality, "")]
            )
        )
    following = (rows[-1][0], _aware(rows[-1][1])) if len(rows) == EXPORT_CHUNK_ROWS else None
    return "".join(lines), following


def export_lines(ids: list[int], names: dict[int, str], start: datetime, end: datetime) -> Iterator[str]:
    """The whole export, chunk by chunk (WSGI and the test client)."""
    yield csv.writer(_Line()).writerow(EXPORT_COLUMNS)
    after: tuple[int, datetime] | None = None
    while True:
        text, after = export_chunk(ids, names, start, end, after)
        if text:
            yield text
        if after is None:
            return


async def export_lines_async(
    ids: list[int], names: dict[int, str], start: datetime, end: datetime
) -> AsyncIterator[str]:
    """The same for ASGI (Daphne): each chunk read on the database thread, the response sent as it comes."""
    yield csv.writer(_Line()).writerow(EXPORT_COLUMNS)
    after: tuple[int, datetime] | None = None
    chunk = sync_to_async(export_chunk, thread_sensitive=True)
    while True:
        text, after = await chunk(ids, names, start, end, after)
        if text:
            yield text
        if after is None:
            return


class TrendExportView(APIView):
    """The raw samples of points over a range as CSV (``time,point,value,quality``), streamed."""

    renderer_classes = [JSONRenderer]  # errors are JSON; the CSV itself is a streamed response

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[Any, str]:
        """Any ``Accept`` is fine: the answer is CSV, its errors JSON."""
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    @extend_schema(
        operation_id="trends_export_csv",
        summary="Trend samples as CSV (streamed)",
        description=(
            "Every raw sample of the points in the range, by point then time: `time,point,value,quality` "
            "(time in UTC, ISO 8601; value empty when there is none). Streamed as it is read."
        ),
        parameters=[ExportQuerySerializer],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR), **error_responses(400)},
        tags=["trends"],
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = parse_query(request, ExportQuerySerializer)
        points = _points(query["points"])
        ids, names = _ids(points), {point.pk: point.name for point in points}
        start, end = query["start"], query["end"]
        if isinstance(request._request, ASGIRequest):
            content: Any = export_lines_async(ids, names, start, end)
        else:
            content = export_lines(ids, names, start, end)
        response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
        stamp = f"{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}"
        response["Content-Disposition"] = f'attachment; filename="trend-{stamp}.csv"'
        response["Cache-Control"] = "no-store"
        response["X-Accel-Buffering"] = "no"
        return response


urlpatterns = [
    path("", TrendView.as_view(), name="api-v1-trends"),
    path("csv", TrendExportView.as_view(), name="api-v1-trends-csv"),
]


class TrendAliasView(TrendView):
    """``/api/trends/``: the same as ``/api/v1/trends/`` (kept out of the schema, which documents the latter)."""

    schema = None


class TrendExportAliasView(TrendExportView):
    """``/api/trends/csv``: the same as ``/api/v1/trends/csv`` (kept out of the schema)."""

    schema = None
