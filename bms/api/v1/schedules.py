"""Schedules and calendars (issue 12 item 6): BACnet Schedule and Calendar objects as JSON.

* ``schedules/`` (CRUD): the weekly table, exceptions, targets, effective period and default; read by every
  logged-in user, changed with ``schedules.add/change/delete_schedule`` (engineers);
* ``GET schedules/<id>/next-transitions``: the value in force and the next transitions (every user);
* ``calendars/`` (CRUD): calendars with their entries and public holidays (``schedules.*_calendar`` to change);
* ``GET calendars/<id>/ical``: a calendar as iCalendar (RFC 5545) (every user);
* ``POST calendars/import``: a calendar from iCalendar text (``schedules.add_calendar``; replacing one also
  ``schedules.change_calendar``).

Sites (ADR 0021, :mod:`bms.sites.scope`): a schedule belongs to a site and
writes only that site's points; a calendar belongs to a site or to none
(shared, e.g. public holidays). A caller restricted to some sites lists and
reaches only the schedules of those sites and the calendars of those sites or
shared ones; any other id is answered exactly like an id that does not exist
(a 404, looked up before the permission check, also for changes), and a
point, calendar or site of another site named in a body exactly like a name
that does not exist. Shared calendars are changed only by callers who see
every site (403 for the others). ``site`` (a name) is in every answer and
taken on create: a schedule made without one gets the default site ``main``
when the caller sees it (else ``site`` is required), a calendar made without
one is shared (a restricted caller must give one).

A schedule is one JSON object with its exceptions and targets inside: what
an engineer edits at once is saved at once (one transaction; the model's
checks, docs/schedules.md, decide, and their refusals are 400 ``invalid``
with the message under the field; a list's items by index,
``{"exceptions": {"2": {"time_values": [...]}}}``). Exceptions keep their
``id`` when sent back with it: the id is part of the identity of the
transitions they cause (``sch7:20261224T000000:ex12``), so an edit that does
not change an exception does not give its transitions new identities. Every
change bumps the configuration revision (the models' signals), so the engine
reloads, and is recorded in the audit trail like every configuration change
(``bms/audit/changes.py``, on the same signals).

Transitions are computed here, from the saved definition, by the same pure
evaluator the engine runs (:mod:`bms.schedules.evaluate`); ``live`` adds what
the engine itself holds (the image entry ``schedule:<name>``) when it runs the
schedule and answers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error

from bms.api.v1.alarms import LookupMixin, ModelValidationMixin, parse_query
from bms.api.v1.checked import LookupFirstMixin
from bms.api.v1.configuration import live_entries
from bms.api.v1.docs import error_responses
from bms.api.v1.fields import (
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictModelSerializer,
    StrictSerializer,
)
from bms.api.v1.permissions import ModelPermissions, permission
from bms.api.v1.scoping import DefaultSiteMixin, ScopedNameField, context_site_ids, site_field
from bms.points.importer import ImportFailed
from bms.points.models import Point
from bms.schedules import evaluate as ev
from bms.schedules import ical
from bms.schedules.models import (
    DATE_ENTRY_FIELDS,
    Calendar,
    CalendarEntry,
    ExceptionEvent,
    Schedule,
    ScheduleTarget,
)
from bms.sites import scope as sites
from bms.sites.models import Site

#: the most transitions one request lists
MAX_TRANSITIONS = 100
DEFAULT_TRANSITIONS = 5
#: the image entry of a schedule (docs/schedules.md)
ENTRY_PREFIX = "schedule:"
#: the most years of public holidays one export lists
MAX_HOLIDAY_YEARS = 50


# ---- sites: what the caller may see (bms/sites/scope.py) -----------------------------------------------------------


class SiteScopedMixin:
    """A view of objects that belong to sites: it lists and finds only the caller's (``shared``: and site-less ones).

    Another site's object is thereby answered exactly like a missing one (the view's 404), and left out of lists
    and their counts. The caller's sites are worked out once per request.
    """

    site_path = "site"
    shared = False

    def site_ids(self) -> sites.SiteIds:
        return sites.request_site_ids(self.request)  # type: ignore[attr-defined]

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()  # type: ignore[misc]
        narrow = sites.shared_or_in_sites if self.shared else sites.in_sites
        return narrow(queryset, self.site_ids(), self.site_path)


# ---- serializers ---------------------------------------------------------------------------------------------------


class TargetSerializer(StrictModelSerializer):
    """A point the schedule writes, and the priority of its slot in the point's priority array."""

    point = ScopedNameField(
        slug_field="name",
        queryset=Point.objects.all(),
        site_field="device__site",
        help_text="a writable point of the schedule's type",
        error_messages={"does_not_exist": "There is no point named {value!r}."},
    )

    class Meta:
        model = ScheduleTarget
        fields = ["point", "priority"]


class ExceptionSerializer(StrictModelSerializer):
    """An exception (BACnet special event): its days, its event priority and its time/values."""

    id = StrictIntegerField(
        required=False, help_text="send it back to keep the exception (and its transitions' identity); omit for new"
    )
    calendar = ScopedNameField(
        slug_field="name",
        queryset=Calendar.objects.all(),
        shared=True,
        required=False,
        allow_null=True,
        help_text="kind calendar: the calendar (by name), of the schedule's site or shared",
        error_messages={"does_not_exist": "There is no calendar named {value!r}."},
    )
    time_values = serializers.JSONField(
        required=False, help_text='[{"time": "00:00", "value": false}]; a null value hands control back'
    )
    days = serializers.SerializerMethodField(help_text="the days in words")

    class Meta:
        model = ExceptionEvent
        fields = [
            "id",
            *DATE_ENTRY_FIELDS,
            "calendar",
            "event_priority",
            "time_values",
            "days",
        ]

    def get_days(self, event: ExceptionEvent) -> str:
        return event.describe_days()


class ScheduleSerializer(DefaultSiteMixin, StrictModelSerializer):
    """A schedule whole: its site, the weekly table, exceptions, targets, effective period and default."""

    site = site_field(help_text="the site (by name); its targets are points of it; default: main, if yours")
    weekly = serializers.JSONField(
        required=False, help_text='{"monday": [{"time": "07:00", "value": true}, ...], ...}; days left out: empty'
    )
    default_value = serializers.JSONField(required=False, allow_null=True, help_text="null: relinquish")
    exceptions = ExceptionSerializer(many=True, required=False, help_text="replaces the exceptions when given")
    targets = TargetSerializer(many=True, required=False, help_text="replaces the targets when given")

    class Meta:
        model = Schedule
        fields = [
            "id",
            "name",
            "description",
            "enabled",
            "value_type",
            "default_value",
            "weekly",
            "effective_from",
            "effective_to",
            "time_zone",
            "site",
            "exceptions",
            "targets",
        ]

    def create(self, validated: dict[str, Any]) -> Schedule:
        exceptions = validated.pop("exceptions", [])
        targets = validated.pop("targets", [])
        schedule = Schedule(**validated)
        _store(schedule, exceptions, targets, {})
        return schedule

    def update(self, schedule: Schedule, validated: dict[str, Any]) -> Schedule:
        exceptions = validated.pop("exceptions", None)
        targets = validated.pop("targets", None)
        for name, value in validated.items():
            setattr(schedule, name, value)
        _store(schedule, exceptions, targets, {event.pk: event for event in schedule.exceptions.all()})
        return schedule


def _store(
    schedule: Schedule,
    exceptions: list[dict[str, Any]] | None,
    targets: list[dict[str, Any]] | None,
    old: dict[int, ExceptionEvent],
) -> None:
    """Save a schedule with its exceptions and targets, in an order in which the models' checks see the new whole.

    Each part is checked against what is saved around it (the schedule's values against its saved targets, an
    exception's against the targets, a target against every value), so: what goes is deleted first, then the
    schedule is saved, then the exceptions (kept ones updated in place, under their id), then the targets (a
    kept point keeps its row, with the new priority). When the value type changes, the kept exceptions are
    saved again under their ids after the schedule (their old values are of the old type). Rows that do not
    change are saved unchanged, so the audit trail records only what changed. ``None``: keep that list as it
    is. Runs in the caller's transaction: any refusal raises and nothing is kept.
    """
    schedule._prefetched_objects_cache = {}  # type: ignore[attr-defined]  # the checks must read the rows as they are
    retyped = (
        schedule.pk is not None
        and Schedule.objects.filter(pk=schedule.pk).exclude(value_type=schedule.value_type).exists()
    )
    events = list(old.values()) if exceptions is None else _events(exceptions, old)
    current = {target.point_id: target for target in schedule.targets.all()} if schedule.pk else {}
    rows = list(current.values()) if targets is None else _targets(targets, current)
    if schedule.pk:
        kept = {event.pk for event in events if event.pk is not None}
        schedule.exceptions.exclude(pk__in=set() if retyped else kept).delete()
        wanted = {row.point_id for row in rows}
        schedule.targets.exclude(point_id__in=wanted).delete()
    try:
        schedule.save()
    except DjangoValidationError as exc:
        raise ValidationError(model_errors(exc)) from exc
    errors: dict[str, Any] = {}
    # refusals by index, only of the items refused (as DRF reports a list's items)
    event_errors = {
        index: found for index, event in enumerate(events) if (found := _save_child(event, schedule, again=retyped))
    }
    if event_errors:
        errors["exceptions"] = event_errors
    target_errors = {index: found for index, row in enumerate(rows) if (found := _save_child(row, schedule))}
    if target_errors:
        errors["targets"] = target_errors
    if errors:
        raise ValidationError(errors)


def _events(exceptions: list[dict[str, Any]], old: dict[int, ExceptionEvent]) -> list[ExceptionEvent]:
    """The exceptions asked for: a kept one (its ``id`` given) is its row with the new fields, others are new."""
    events: list[ExceptionEvent] = []
    problems: dict[int, dict[str, Any]] = {}
    for index, data in enumerate(exceptions):
        data = dict(data)
        pk = data.pop("id", None)
        if pk is None:
            events.append(ExceptionEvent(**data))
            continue
        if pk not in old:
            problems[index] = {"id": [f"This schedule has no exception with id {pk}; leave id out for a new one."]}
        elif any(event.pk == pk for event in events):
            problems[index] = {"id": [f"Exception {pk} is listed twice; send each exception once."]}
        else:
            event = old[pk]
            for name in ExceptionSerializer.Meta.fields:
                if name not in ("id", "days"):
                    setattr(event, name, data.get(name, ExceptionEvent._meta.get_field(name).get_default()))
            events.append(event)
    if problems:
        raise ValidationError({"exceptions": problems})
    return events


def _targets(targets: list[dict[str, Any]], current: dict[int, ScheduleTarget]) -> list[ScheduleTarget]:
    """The targets asked for: a point already written keeps its row (with the new priority); one point once."""
    rows: list[ScheduleTarget] = []
    problems: dict[int, dict[str, Any]] = {}
    for index, data in enumerate(targets):
        point, priority = data["point"], data.get("priority", 16)
        if any(row.point_id == point.pk for row in rows):
            problems[index] = {"point": [f"{point} is listed twice; one target per point."]}
            continue
        row = current.get(point.pk) or ScheduleTarget(point=point)
        row.priority = priority
        rows.append(row)
    if problems:
        raise ValidationError({"targets": problems})
    return rows


def _save_child(row: ExceptionEvent | ScheduleTarget, schedule: Schedule, again: bool = False) -> dict[str, Any]:
    """Save one exception or target of ``schedule``; its refusals by field (empty: saved).

    ``again``: the row was deleted above and is inserted again under its id.
    """
    row.schedule = schedule
    if again and row.pk is not None:
        row._state.adding = True
    try:
        row.save(force_insert=again and row.pk is not None)
    except DjangoValidationError as exc:
        return model_errors(exc)
    return {}


def model_errors(exc: DjangoValidationError) -> dict[str, Any]:
    """A model's refusals by field, as the API names them (``__all__``: ``non_field_errors``)."""
    detail = as_serializer_error(exc)
    return {("non_field_errors" if name == "__all__" else name): messages for name, messages in detail.items()}


class CalendarEntrySerializer(StrictModelSerializer):
    """One day, range or pattern of a calendar."""

    days = serializers.SerializerMethodField(help_text="the days in words")

    class Meta:
        model = CalendarEntry
        fields = [*DATE_ENTRY_FIELDS, "days"]

    def get_days(self, entry: CalendarEntry) -> str:
        return entry.describe_days()


class CalendarSerializer(StrictModelSerializer):
    """A calendar shared by schedules: its site (none: every site's), its entries and its public holidays."""

    site = site_field(
        allow_null=True,
        help_text="the site (by name) whose schedules may use it; null: shared by every site (default, for a "
        "caller who sees every site; only such a caller changes a shared calendar)",
    )
    entries = CalendarEntrySerializer(many=True, required=False, help_text="replaces the entries when given")
    used_by = serializers.SerializerMethodField(help_text="the schedules (of your sites) whose exceptions take it")

    class Meta:
        model = Calendar
        fields = ["id", "name", "description", "holiday_country", "holiday_subdivision", "site", "entries", "used_by"]

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        data = super().validate(data)
        if self.instance is None and "site" not in data and not sites.sees_all(context_site_ids(self.context)):
            raise ValidationError({"site": [self.fields["site"].error_messages["required"]]})
        return data

    def get_used_by(self, calendar: Calendar) -> list[str]:
        events = sites.in_sites(calendar.exception_events.all(), context_site_ids(self.context), "schedule__site")
        return sorted(events.values_list("schedule__name", flat=True).distinct())

    def create(self, validated: dict[str, Any]) -> Calendar:
        entries = validated.pop("entries", [])
        calendar = Calendar(**validated)
        self._store(calendar, entries)
        return calendar

    def update(self, calendar: Calendar, validated: dict[str, Any]) -> Calendar:
        entries = validated.pop("entries", None)
        for name, value in validated.items():
            setattr(calendar, name, value)
        self._store(calendar, entries)
        return calendar

    @staticmethod
    def _store(calendar: Calendar, entries: list[dict[str, Any]] | None) -> None:
        try:
            calendar.save()
        except DjangoValidationError as exc:
            raise ValidationError(model_errors(exc)) from exc
        if entries is None:
            return
        calendar.entries.all().delete()
        problems = {}
        for index, data in enumerate(entries):
            try:
                CalendarEntry(calendar=calendar, **data).save()
            except DjangoValidationError as exc:
                problems[index] = model_errors(exc)
        if problems:
            raise ValidationError({"entries": problems})


class TransitionsQuerySerializer(serializers.Serializer):
    """Parameters of ``next-transitions``."""

    count = serializers.IntegerField(
        required=False, default=DEFAULT_TRANSITIONS, min_value=1, max_value=MAX_TRANSITIONS, help_text="how many"
    )
    after = serializers.DateTimeField(
        required=False, help_text="list the transitions after this instant (ISO 8601, default now; no offset: UTC)"
    )
    live = serializers.BooleanField(
        required=False, default=True, help_text="false: skip the engine's live state (answers at once)"
    )


class TransitionSerializer(serializers.Serializer):
    """One transition: when (UTC, and local in the schedule's zone), the new value and where it comes from."""

    identity = serializers.CharField(help_text="stable id of the occurrence, e.g. sch7:20261224T000000:ex12")
    at = serializers.DateTimeField(help_text="the UTC instant it takes effect (after the DST rules)")
    local = serializers.CharField(help_text="the same instant in the schedule's time zone, ISO 8601 with offset")
    local_date = serializers.DateField()
    local_time = serializers.CharField(help_text="the entry's nominal local time (HH:MM[:SS])")
    value = serializers.JSONField(allow_null=True, help_text="null: the schedule relinquishes its targets' slot")
    source = serializers.CharField(help_text="weekly, default or ex<exception id>")
    source_label = serializers.CharField(help_text="the source in words")


class InForceSerializer(serializers.Serializer):
    """The value in force at ``after`` (computed)."""

    active = serializers.BooleanField(help_text="false: outside the effective period (writes nothing)")
    value = serializers.JSONField(allow_null=True)
    since = serializers.DateTimeField(allow_null=True)
    identity = serializers.CharField(allow_null=True, help_text="the occurrence that set it")
    source_label = serializers.CharField(allow_null=True)


class NextTransitionsSerializer(serializers.Serializer):
    """What ``next-transitions`` answers."""

    schedule = serializers.CharField()
    time_zone = serializers.CharField()
    after = serializers.DateTimeField()
    in_force = InForceSerializer()
    transitions = TransitionSerializer(many=True)
    live = serializers.JSONField(
        allow_null=True, help_text="the engine's image entry schedule:<name> (value, quality, time, seq), if any"
    )
    live_problem = serializers.CharField(allow_null=True, help_text="why live is null, when the engine did not answer")


class ImportSerializer(StrictSerializer):
    """An iCalendar file to store as a calendar."""

    ical = StrictCharField(trim_whitespace=False, max_length=512 * 1024, help_text="the iCalendar (RFC 5545) text")
    site = site_field(
        allow_null=True,
        help_text="the site (by name) of the calendar; null: shared (only for a caller who sees every site). "
        "Default: a new calendar is shared, a replaced one keeps its site; a restricted caller must give one "
        "for a new calendar",
    )
    name = StrictCharField(
        required=False, allow_blank=True, default="", max_length=64, help_text="default: X-WR-CALNAME"
    )
    replace = StrictBooleanField(required=False, default=False, help_text="replace an existing calendar's entries")
    dry_run = StrictBooleanField(required=False, default=False, help_text="check and report, store nothing")


class ExportQuerySerializer(serializers.Serializer):
    """Parameters of the iCalendar export."""

    holiday_years = serializers.RegexField(
        r"^\d{4}(-\d{4})?$",
        required=False,
        help_text="also list the public holidays of these years as dated events (2026 or 2026-2028)",
    )

    def validate_holiday_years(self, text: str) -> range:
        first, _, last = text.partition("-")
        start, end = int(first), int(last or first)
        if not 1900 <= start <= end < start + MAX_HOLIDAY_YEARS:
            raise ValidationError(f"Give at most {MAX_HOLIDAY_YEARS} years from 1900 on, the first one first.")
        return range(start, end + 1)


# ---- transitions -----------------------------------------------------------------------------------------------


def _source_label(source: str, events: dict[str, ExceptionEvent]) -> str:
    if source.startswith("ex"):
        event = events.get(source[2:])
        return f"exception: {event}" if event is not None else "exception"
    return source


def transitions(schedule: Schedule, after: datetime, count: int) -> dict[str, Any]:
    """The value in force at ``after`` and the next ``count`` transitions, by the engine's own evaluator."""
    definition = schedule.definition()
    events = {str(event.pk): event for event in schedule.exceptions.select_related("calendar")}
    zone = definition.zone
    state = ev.value_at(definition, after)
    upcoming = ev.next_transitions(definition, after, count)
    return {
        "schedule": schedule.name,
        "time_zone": schedule.time_zone,
        "after": after,
        "in_force": {
            "active": state.active,
            "value": state.value,
            "since": state.since,
            "identity": state.occurrence.identity if state.occurrence else None,
            "source_label": _source_label(state.occurrence.source, events) if state.occurrence else None,
        },
        "transitions": [
            {
                "identity": occurrence.identity,
                "at": occurrence.at,
                "local": occurrence.at.astimezone(zone).isoformat(),
                "local_date": occurrence.local_date,
                "local_time": ev.format_time(occurrence.local_time),
                "value": occurrence.value,
                "source": occurrence.source,
                "source_label": _source_label(occurrence.source, events),
            }
            for occurrence in upcoming
        ],
    }


# ---- views ---------------------------------------------------------------------------------------------------------

_WRITE_ERRORS = (400, 403, 409)


@extend_schema_view(
    list=extend_schema(summary="Schedules", responses={200: ScheduleSerializer(many=True), **error_responses(400)}),
    retrieve=extend_schema(summary="One schedule", responses={200: ScheduleSerializer, **error_responses(404)}),
    create=extend_schema(
        summary="Create a schedule",
        description="Checked whole by the models (docs/schedules.md): each refusal is a message under its field.",
        responses={201: ScheduleSerializer, **error_responses(*_WRITE_ERRORS)},
    ),
    update=extend_schema(
        summary="Replace a schedule",
        description="Exceptions sent with their `id` are kept under it; those left out are deleted.",
        responses={200: ScheduleSerializer, **error_responses(*_WRITE_ERRORS, 404)},
    ),
    partial_update=extend_schema(
        summary="Change a schedule",
        description="Fields left out keep their value; `exceptions` or `targets`, when given, replace the lists.",
        responses={200: ScheduleSerializer, **error_responses(*_WRITE_ERRORS, 404)},
    ),
    destroy=extend_schema(summary="Delete a schedule", responses={204: None, **error_responses(403, 404)}),
)
class ScheduleViewSet(LookupFirstMixin, LookupMixin, SiteScopedMixin, ModelValidationMixin, viewsets.ModelViewSet):
    """Schedules of the caller's sites: read for every logged-in user, changed with the schedule permissions."""

    queryset = Schedule.objects.prefetch_related("exceptions__calendar", "targets__point").order_by("name")
    serializer_class = ScheduleSerializer
    permission_classes = [ModelPermissions]
    what = "schedule"

    @extend_schema(
        operation_id="schedules_next_transitions",
        summary="The value in force and the next transitions",
        description=(
            "Computed from the saved definition by the engine's evaluator (DST rules, exceptions, calendars): "
            "the value in force at `after` (default now) and the next `count` transitions after it. `live` is "
            "what the engine holds for the schedule (its image entry), when it runs it and answers."
        ),
        parameters=[TransitionsQuerySerializer],
        responses={200: NextTransitionsSerializer, **error_responses(400, 404)},
        tags=["schedules"],
    )
    def next_transitions(self, request: Request, pk: str) -> Response:
        query = parse_query(request, TransitionsQuerySerializer)
        schedule = self.get_object()
        after = query.get("after") or timezone.now()
        if after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
        try:
            answer = transitions(schedule, after.astimezone(UTC), query["count"])
        except ValueError as exc:  # a definition stored before a check existed: say what is wrong with it
            raise ValidationError({"non_field_errors": [str(exc)]}) from exc
        live, problem = (None, None)
        if query["live"]:
            entries, problem = live_entries([ENTRY_PREFIX + schedule.name])
            live = (entries or {}).get(ENTRY_PREFIX + schedule.name)
        answer.update(live=live, live_problem=problem)
        response = Response(NextTransitionsSerializer(answer).data)
        response["Cache-Control"] = "no-store"
        return response


@extend_schema_view(
    list=extend_schema(summary="Calendars", responses={200: CalendarSerializer(many=True), **error_responses(400)}),
    retrieve=extend_schema(summary="One calendar", responses={200: CalendarSerializer, **error_responses(404)}),
    create=extend_schema(
        summary="Create a calendar", responses={201: CalendarSerializer, **error_responses(*_WRITE_ERRORS)}
    ),
    update=extend_schema(
        summary="Replace a calendar", responses={200: CalendarSerializer, **error_responses(*_WRITE_ERRORS, 404)}
    ),
    partial_update=extend_schema(
        summary="Change a calendar", responses={200: CalendarSerializer, **error_responses(*_WRITE_ERRORS, 404)}
    ),
    destroy=extend_schema(
        summary="Delete a calendar (not while an exception uses it)",
        responses={204: None, **error_responses(403, 404, 409)},
    ),
)
class CalendarViewSet(LookupFirstMixin, LookupMixin, SiteScopedMixin, ModelValidationMixin, viewsets.ModelViewSet):
    """Calendars of the caller's sites and shared ones: read for every logged-in user, changed with the calendar
    permissions (engineers); a shared one only by a caller who sees every site."""

    queryset = Calendar.objects.prefetch_related("entries").order_by("name")
    serializer_class = CalendarSerializer
    permission_classes = [ModelPermissions]
    what = "calendar"
    shared = True

    def may_change(self, site: Site | None) -> None:
        """Refuse (403) a change that makes or touches a shared calendar, unless the caller sees every site."""
        if site is None and not sites.sees_all(self.site_ids()):
            who = self.request.user.get_username()
            self.permission_denied(
                self.request,
                message={
                    "detail": f"{who} may not change shared calendars: a calendar of no site serves every site, and "
                    "only a user who sees every site changes it. Give the calendar one of your sites."
                },
            )

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.may_change(self.get_object().site)  # after the permission check, before the body is checked
        return super().update(request, *args, **kwargs)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.may_change(self.get_object().site)
        return super().destroy(request, *args, **kwargs)

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        self.may_change(serializer.validated_data.get("site"))
        super().perform_create(serializer)

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        if "site" in serializer.validated_data:
            self.may_change(serializer.validated_data["site"])
        super().perform_update(serializer)

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # the export is iCalendar text whatever the client accepts; the JSON renderer stays for its errors
        return super().perform_content_negotiation(request, force=force or self.action == "export_ical")

    def get_permissions(self) -> list[Any]:
        if self.action == "import_ical":
            return [permission("schedules.add_calendar", "import calendars")()]
        return super().get_permissions()

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return ImportSerializer if self.action == "import_ical" else super().get_serializer_class()

    @extend_schema(
        operation_id="calendars_ical_export",
        summary="A calendar as iCalendar",
        description="All-day events (RFC 5545); the holiday setting travels as X-BMS-HOLIDAY-COUNTRY/-SUBDIVISION.",
        parameters=[ExportQuerySerializer],
        responses={
            (200, "text/calendar"): OpenApiResponse(OpenApiTypes.STR, description="the .ics file"),
            **error_responses(400, 404),
        },
        tags=["calendars"],
    )
    def export_ical(self, request: Request, pk: str) -> HttpResponse:
        query = parse_query(request, ExportQuerySerializer)
        calendar = self.get_object()
        text = ical.export_calendar(calendar, holiday_years=query.get("holiday_years", range(0)))
        response = HttpResponse(text, content_type="text/calendar; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{calendar.name}.ics"'
        return response

    def _import_name(self, wanted: dict[str, Any]) -> str:
        """The calendar an import makes or replaces, checked against the caller's sites before anything is stored.

        A calendar of another site is answered as a name already taken (what making one by that name answers); a
        shared one, or a new one without a site, is refused (403) unless the caller sees every site.
        """
        name = wanted["name"] or ical.parse_ical(wanted["ical"]).name
        existing = Calendar.objects.filter(name=name).select_related("site").first()
        if existing is not None and not self.get_queryset().filter(pk=existing.pk).exists():
            raise ValidationError({"name": existing.unique_error_message(Calendar, ("name",)).messages})
        if "site" in wanted:
            self.may_change(wanted["site"])
        elif existing is None and not sites.sees_all(self.site_ids()):
            raise ValidationError({"site": [ImportSerializer().fields["site"].error_messages["required"]]})
        if existing is not None and wanted["replace"]:
            self.may_change(existing.site)
        return name

    def _place(self, calendar: Calendar, wanted: dict[str, Any]) -> None:
        """Give an imported calendar the site asked for (its users checked by the model)."""
        if "site" in wanted and calendar.site != wanted["site"]:
            calendar.site = wanted["site"]
            try:
                calendar.save()
            except DjangoValidationError as exc:
                raise ValidationError(model_errors(exc)) from exc

    @extend_schema(
        operation_id="calendars_ical_import",
        summary="Store an iCalendar file as a calendar",
        description=(
            "All of it or nothing: every event that cannot be taken is listed (400). An existing calendar is "
            "refused unless `replace` (which needs `schedules.change_calendar` too)."
        ),
        request=ImportSerializer,
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="`name`, `created`, `entries`, `skipped`, `dry_run`"),
            **error_responses(400, 403, 413),  # the iCalendar text may be larger than a body may be
        },
        tags=["calendars"],
    )
    def import_ical(self, request: Request) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        wanted = body.validated_data
        if wanted["replace"] and not request.user.has_perm("schedules.change_calendar"):
            checker = permission("schedules.change_calendar", "replace calendars")()
            checker.has_permission(request, self)
            self.permission_denied(request, message=checker.message)
        try:
            with transaction.atomic():
                result = ical.import_calendar(
                    wanted["ical"],
                    self._import_name(wanted),
                    replace=wanted["replace"],
                    dry_run=wanted["dry_run"],
                )
                if not wanted["dry_run"]:
                    self._place(Calendar.objects.get(name=result.name), wanted)
        except ImportFailed as exc:
            messages = [message.replace("with --replace", 'with "replace": true') for message in exc.errors]
            raise ValidationError({"ical": messages}) from exc
        return Response(
            {
                "name": result.name,
                "created": result.created,
                "entries": result.entries,
                "skipped": result.skipped,
                "dry_run": wanted["dry_run"],
            }
        )
