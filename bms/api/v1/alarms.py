"""The alarms API (issue 9 item 6): live states, the journal, operator actions, definitions and classes.

===========================================  ========================================  ============================
``GET  alarms/``                             current states, from the live image       every logged-in user
``GET  alarms/journal/``                     the journal (database), newest first      every logged-in user
``POST alarms/acknowledge``                  acknowledge alarms                        ``alarms.acknowledge_alarm``
``POST alarms/shelve``, ``alarms/unshelve``  shelve / unshelve alarms                  ``alarms.shelve_alarm``
``alarm-definitions/`` (CRUD)                the definitions                           read: all; write: add/change/
                                                                                       delete_alarmdefinition
``POST alarm-definitions/<id>/out-of-service``  take out of service / put back         ``alarms.set_out_of_service``
``alarm-classes/`` (CRUD)                    the classes                               read: all; write: add/change/
                                                                                       delete_alarmclass
===========================================  ========================================  ============================

Live states come from the engine (:func:`bms.alarms.live.current_alarms`)
and actions go to it (:func:`bms.alarms.actions.perform`): when it does not
answer, the API says 503 ``engine_unavailable`` and nothing was changed (or,
for an action whose answer was lost, the journal says what was done; actions
are idempotent, so repeating one is safe). Definitions are checked whole by
the model on every save; its refusals are 400 ``invalid`` with the messages
per field.

Sites (issue 13 item 3): a caller restricted to some sites sees the alarms of those sites only (an alarm's site is
its point's), in the live list, the journal and the definitions, and names or numbers another site's alarm exactly
as one that does not exist: an unknown alarm (400) in an action, a 404 for a definition, an unknown point (400) for
a definition's points. Classes are shared by every site.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error

from bms.alarms.live import definitions_in_sites
from bms.alarms.models import AlarmClass, AlarmDefinition, AlarmJournal
from bms.alarms.states import DISPLAY_STATES, SHELVE_MAX_SECONDS, State, TransitionKind
from bms.api.v1.docs import error_responses
from bms.api.v1.exceptions import ServiceUnavailable
from bms.api.v1.fields import (
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictModelSerializer,
    StrictSerializer,
    json_type,
)
from bms.api.v1.permissions import ModelPermissions, permission
from bms.control.models import AuditEntry
from bms.points.models import Point
from bms.sites.scope import in_sites, named_in_sites, request_site_ids
from bms.tokens.models import WRITE

STATES = tuple(state.value for state in DISPLAY_STATES)
#: what ``GET alarms/`` shows without a state filter: every alarm that is not plainly normal
DEFAULT_STATES = tuple(state for state in STATES if state != State.NORMAL)
TRANSITIONS = tuple(kind.value for kind in TransitionKind)
#: the most alarms one action names, and the longest comment
MAX_ALARMS_PER_ACTION = 1000
MAX_COMMENT_CHARS = 1000
#: the most values one multi-valued query parameter takes
MAX_FILTER_VALUES = 200
#: query parameters every list takes besides its filters (DRF reads ``format`` itself)
COMMON_PARAMETERS = ("limit", "offset", "format")


def live_wait_seconds() -> float:
    """How long ``GET alarms/`` waits for the engine's snapshot (``BMS_API_ENGINE_WAIT_SECONDS``, default 3 s)."""
    return float(getattr(settings, "BMS_API_ENGINE_WAIT_SECONDS", 3.0))


def action_wait_seconds() -> float:
    """How long an action waits for the engine's answer (``BMS_API_ACTION_WAIT_SECONDS``, default 5 s)."""
    return float(getattr(settings, "BMS_API_ACTION_WAIT_SECONDS", 5.0))


def shelve_max_seconds() -> float:
    """The longest shelving this site allows (``BMS_ALARM_SHELVE_MAX_SECONDS``, default 8 h), as the engine caps it."""
    return float(getattr(settings, "BMS_ALARM_SHELVE_MAX_SECONDS", SHELVE_MAX_SECONDS))


# ---- serializers: renamed fields, query parameters -----------------------------------------------------------------


class RenamedFieldsMixin:
    """Fields whose API name is a Python keyword (``class``) are declared as ``class_`` and renamed here."""

    renamed = {"class_": "class"}

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()  # type: ignore[misc]
        return {self.renamed.get(name, name): field for name, field in fields.items()}


class MultiValueField(serializers.ListField):
    """A query parameter given several times (``?state=a&state=b``) or, if ``commas``, as ``?state=a,b``."""

    def __init__(self, *, commas: bool = True, **kwargs: Any) -> None:
        self.commas = commas
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", MAX_FILTER_VALUES)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[Any]:
        if self.commas and isinstance(data, list):
            data = [part.strip() for item in data for part in str(item).split(",") if part.strip()]
        return list(dict.fromkeys(super().to_internal_value(data)))


def parse_query(request: Request, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
    """The view's query parameters, checked by ``serializer_class``; an unknown parameter is a 400 too.

    The serializer gets the request in its context (what a field needs to know the caller's sites)."""
    known = set(serializer_class().fields) | set(COMMON_PARAMETERS)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        listing = ", ".join(sorted(known))
        raise ValidationError({name[:60]: [f"Unknown query parameter; use {listing}."] for name in unknown[:10]})
    query = serializer_class(data=request.query_params, context={"request": request})
    query.is_valid(raise_exception=True)
    return dict(query.validated_data)


class LiveQuerySerializer(RenamedFieldsMixin, serializers.Serializer):
    """Filters of the live alarm list."""

    state = MultiValueField(
        child=serializers.ChoiceField(choices=STATES),
        help_text="display states to show (repeat or separate with commas); default: every state but normal",
    )
    class_ = MultiValueField(child=serializers.CharField(max_length=64), help_text="alarm classes (by name)")
    area = MultiValueField(commas=False, child=serializers.CharField(max_length=128), help_text="areas (repeat)")
    point = MultiValueField(child=serializers.CharField(max_length=128), help_text="point names")
    priority_min = serializers.IntegerField(min_value=1, max_value=1000, required=False, help_text="1 = most urgent")
    priority_max = serializers.IntegerField(min_value=1, max_value=1000, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        low, high = attrs.get("priority_min"), attrs.get("priority_max")
        if low is not None and high is not None and low > high:
            raise ValidationError({"priority_max": ["priority_max is below priority_min."]})
        return attrs


class LiveAlarmSerializer(RenamedFieldsMixin, serializers.Serializer):
    """One alarm's current state, from the engine's process image."""

    name = serializers.CharField()
    point = serializers.CharField()
    state = serializers.ChoiceField(choices=STATES, help_text="display state (out of service, suppressed, shelved win)")
    alarm_state = serializers.ChoiceField(
        choices=[state.value for state in State], help_text="the ISA-18.2 state beneath"
    )
    priority = serializers.IntegerField(allow_null=True, help_text="1 (most urgent) to 1000")
    class_ = serializers.CharField(allow_null=True)
    colour = serializers.CharField(allow_null=True)
    area = serializers.CharField(allow_blank=True)
    message = serializers.CharField(allow_blank=True)
    value = serializers.JSONField(allow_null=True, help_text="the point's value when last evaluated")
    since = serializers.DateTimeField(allow_null=True, help_text="when the alarm entered this state (UTC)")
    ack_required = serializers.BooleanField(allow_null=True)
    shelved_until = serializers.DateTimeField(allow_null=True)
    shelved_by = serializers.CharField(allow_blank=True)
    chattering = serializers.BooleanField()
    annunciated = serializers.BooleanField(
        required=False, help_text="false: a journal-only class (not on the console, not notified)"
    )
    seq = serializers.IntegerField(allow_null=True, help_text="the image sequence number of its last change")


def select_live(alarms: list[dict[str, Any]], query: dict[str, Any]) -> list[dict[str, Any]]:
    """The alarms ``query`` (validated :class:`LiveQuerySerializer` data) selects, by priority then newest first."""
    states = set(query.get("state") or DEFAULT_STATES)
    classes = set(query.get("class") or ())
    areas = set(query.get("area") or ())
    points = set(query.get("point") or ())
    low, high = query.get("priority_min"), query.get("priority_max")
    chosen = []
    for alarm in alarms:
        priority = alarm.get("priority")
        if alarm.get("state") not in states:
            continue
        if (classes and alarm.get("class") not in classes) or (areas and alarm.get("area") not in areas):
            continue
        if points and alarm.get("point") not in points:
            continue
        if (low is not None or high is not None) and priority is None:
            continue
        if (low is not None and priority < low) or (high is not None and priority > high):
            continue
        chosen.append(alarm)
    chosen.sort(key=lambda alarm: _moment(alarm.get("since")), reverse=True)
    chosen.sort(key=lambda alarm: alarm["priority"] if alarm.get("priority") is not None else 1001)
    return chosen


def _moment(text: str | None) -> float:
    if not text:
        return float("-inf")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("-inf")


class JournalQuerySerializer(RenamedFieldsMixin, serializers.Serializer):
    """Filters of the alarm journal (times in ISO 8601; without an offset they are UTC)."""

    alarm = MultiValueField(child=serializers.CharField(max_length=160), help_text="alarm names")
    point = MultiValueField(child=serializers.CharField(max_length=128), help_text="point names")
    transition = MultiValueField(child=serializers.ChoiceField(choices=TRANSITIONS), help_text="transitions")
    class_ = MultiValueField(child=serializers.CharField(max_length=64), help_text="alarm classes")
    area = MultiValueField(commas=False, child=serializers.CharField(max_length=128), help_text="areas (repeat)")
    user = MultiValueField(commas=False, child=serializers.CharField(max_length=150), help_text="user names")
    time_from = serializers.DateTimeField(required=False, help_text="from this time on (inclusive)")
    time_to = serializers.DateTimeField(required=False, help_text="before this time (exclusive)")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("time_from"), attrs.get("time_to")
        if start is not None and end is not None and end < start:
            raise ValidationError({"time_to": ["time_to is before time_from."]})
        return attrs


class JournalEntrySerializer(RenamedFieldsMixin, serializers.ModelSerializer):
    """One journal row: an alarm's transition, who made it and the state it left the alarm in."""

    point = serializers.CharField(source="point_name", read_only=True)
    class_ = serializers.CharField(source="alarm_class", read_only=True)
    user = serializers.CharField(source="username", read_only=True)
    node = serializers.CharField(source="origin", read_only=True, help_text="the node that wrote the row")
    value = serializers.JSONField(read_only=True, allow_null=True)

    class Meta:
        model = AlarmJournal
        fields = [
            "id",
            "time",
            "alarm",
            "point",
            "transition",
            "state",
            "value",
            "priority",
            "class_",
            "area",
            "message",
            "user",
            "comment",
            "count",
            "alarm_seq",
            "recovered",
            "node",
            "recorded_at",
        ]
        read_only_fields = fields


def select_journal(rows: QuerySet[AlarmJournal], query: dict[str, Any]) -> QuerySet[AlarmJournal]:
    """The journal rows ``query`` (validated :class:`JournalQuerySerializer` data) selects, newest first."""
    lookups = {
        "alarm": "alarm__in",
        "point": "point_name__in",
        "transition": "transition__in",
        "class": "alarm_class__in",
        "area": "area__in",
        "user": "username__in",
        "time_from": "time__gte",
        "time_to": "time__lt",
    }
    for name, lookup in lookups.items():
        if query.get(name):
            rows = rows.filter(**{lookup: query[name]})
    return rows.order_by("-time", "-id")


# ---- live states and the journal -----------------------------------------------------------------------------------


class LiveAlarmsView(GenericAPIView):
    """Current alarm states from the live process image."""

    serializer_class = LiveAlarmSerializer

    @extend_schema(
        operation_id="alarms_live_list",
        summary="Current alarm states",
        description=(
            "Every alarm's current state from the engine's live process image (not the database), filtered, "
            "by priority (most urgent first) then newest first. Without `state`, every alarm that is not normal."
        ),
        parameters=[LiveQuerySerializer],
        responses={200: LiveAlarmSerializer(many=True), **error_responses(400, 503)},
        tags=["alarms"],
    )
    def get(self, request: Request) -> Response:
        query = parse_query(request, LiveQuerySerializer)
        # The page parameters too before the engine is asked: a bad offset is a 400 even while the engine is away.
        self.paginator.get_limit(request)
        self.paginator.get_offset(request)
        from bms.alarms.live import alarms_in_sites, current_alarms  # the engine's side; imported when used

        alarms = alarms_in_sites(current_alarms(wait_seconds=live_wait_seconds()), request_site_ids(request))
        alarms = select_live(alarms, query)
        page = self.paginate_queryset(alarms)
        return self.get_paginated_response(LiveAlarmSerializer(page, many=True).data)


class JournalView(GenericAPIView):
    """The alarm journal: every transition, newest first."""

    serializer_class = JournalEntrySerializer
    queryset = AlarmJournal.objects.all()

    def get_queryset(self) -> QuerySet[AlarmJournal]:
        return named_in_sites(super().get_queryset(), request_site_ids(self.request))

    @extend_schema(
        operation_id="alarms_journal_list",
        summary="The alarm journal",
        description="Alarm transitions from the journal (the database), filtered, newest first, a page at a time.",
        parameters=[JournalQuerySerializer],
        responses={200: JournalEntrySerializer(many=True), **error_responses(400)},
        tags=["alarms"],
    )
    def get(self, request: Request) -> Response:
        query = parse_query(request, JournalQuerySerializer)
        page = self.paginate_queryset(select_journal(self.get_queryset(), query))
        return self.get_paginated_response(JournalEntrySerializer(page, many=True).data)


# ---- operator actions ---------------------------------------------------------------------------------------------


class AlarmNamesField(serializers.ListField):
    """The alarms an action names: 1 to :data:`MAX_ALARMS_PER_ACTION` names of defined alarms, duplicates dropped."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            child=StrictCharField(max_length=160),
            min_length=1,
            max_length=MAX_ALARMS_PER_ACTION,
            allow_empty=False,
            help_text="alarm names (as in the definitions)",
            **kwargs,
        )

    def to_internal_value(self, data: Any) -> list[str]:
        if not isinstance(data, list):
            raise ValidationError(f"Expected an array of alarm names, got {json_type(data)}.")
        if len(data) > MAX_ALARMS_PER_ACTION:
            raise ValidationError(f"Name at most {MAX_ALARMS_PER_ACTION} alarms in one request, not {len(data)}.")
        names = list(dict.fromkeys(super().to_internal_value(data)))
        # another site's alarm is named like one that does not exist
        defined = definitions_in_sites(AlarmDefinition.objects.filter(name__in=names), self._site_ids())
        known = set(defined.values_list("name", flat=True))
        unknown = [name for name in names if name not in known]
        if unknown:
            shown = ", ".join(repr(name) for name in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise ValidationError(f"There is no alarm named {shown}{more}.", code="unknown_alarm")
        return names

    def _site_ids(self) -> Any:
        request = self.context.get("request")
        return request_site_ids(request) if request is not None else None


class AcknowledgeSerializer(StrictSerializer):
    """Acknowledge alarms."""

    alarms = AlarmNamesField()
    comment = StrictCharField(max_length=MAX_COMMENT_CHARS, allow_blank=True, required=False, default="")


class UnshelveSerializer(AcknowledgeSerializer):
    """End the shelving of alarms."""


class ShelveSerializer(AcknowledgeSerializer):
    """Shelve alarms: for ``seconds`` (default 15 min), and if ``until_normal`` also until they return to normal."""

    seconds = StrictFloatField(
        required=False, allow_null=True, default=None, help_text="how long (default 900); at most the site's maximum"
    )
    until_normal = StrictBooleanField(required=False, default=False, help_text="end when the alarm returns to normal")

    def validate_seconds(self, seconds: float | None) -> float | None:
        longest = shelve_max_seconds()
        if seconds is not None and not 0 < seconds <= longest:
            raise ValidationError(f"Shelve for more than 0 and at most {longest:g} seconds (this site's maximum).")
        return seconds


class OutcomeSerializer(serializers.Serializer):
    """What happened to one alarm."""

    alarm = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["done", "unchanged", "refused"])
    reason = serializers.CharField(required=False, help_text="why it was refused")


class ActionResultSerializer(serializers.Serializer):
    """The engine's answer: per alarm, done, unchanged (nothing to do) or refused (with the reason)."""

    action = serializers.ChoiceField(choices=["acknowledge", "shelve", "unshelve"])
    done = serializers.ListField(child=serializers.CharField())
    unchanged = serializers.ListField(child=serializers.CharField())
    refused = serializers.DictField(child=serializers.CharField(), help_text="alarm name -> reason")
    results = OutcomeSerializer(many=True, help_text="every alarm named, in the request's order")


class AlarmActionView(GenericAPIView):
    """Base of the operator actions: check, hand to the engine, answer per alarm."""

    #: an API token needs the write scope for it (bms/tokens/auth.py)
    token_scope = WRITE

    action_name = ""
    pagination_class = None

    def post(self, request: Request) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        wanted = dict(body.validated_data)
        names = wanted.pop("alarms")
        from bms.alarms import actions  # the engine's side; imported when used

        try:
            result = actions.perform(
                self.action_name,
                names,
                request.user.get_username(),
                wait_seconds=action_wait_seconds(),
                **wanted,
            )
        except actions.NotActive as exc:
            text = str(exc) or "this node is not the active one"
            detail = f"{text[0].upper()}{text[1:]}; act on the active node."
            raise ServiceUnavailable(detail, code="not_active") from exc
        except ValueError as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from exc
        answer = result.to_dict()
        results = []
        for name in names:
            if name in answer["refused"]:
                results.append({"alarm": name, "outcome": "refused", "reason": answer["refused"][name]})
            else:
                results.append({"alarm": name, "outcome": "done" if name in answer["done"] else "unchanged"})
        return Response({"action": self.action_name, **answer, "results": results})


def _action_schema(verb: str, what: str, permission_name: str) -> Any:
    return extend_schema(
        operation_id=f"alarms_{verb}",
        summary=what,
        description=(
            f"{what} (needs `{permission_name}`). The engine answers per alarm: done, unchanged or refused "
            "with the reason. Names that are not defined alarms make the whole request a 400. A 503 means "
            "the engine did not answer: look at the journal before repeating (repeating is safe)."
        ),
        responses={200: ActionResultSerializer, **error_responses(400, 403, 503)},
        tags=["alarms"],
    )


class AcknowledgeView(AlarmActionView):
    action_name = "acknowledge"
    serializer_class = AcknowledgeSerializer
    permission_classes = [permission("alarms.acknowledge_alarm", "acknowledge alarms")]

    @_action_schema("acknowledge", "Acknowledge alarms", "alarms.acknowledge_alarm")
    def post(self, request: Request) -> Response:
        return super().post(request)


class ShelveView(AlarmActionView):
    action_name = "shelve"
    serializer_class = ShelveSerializer
    permission_classes = [permission("alarms.shelve_alarm", "shelve alarms")]

    @_action_schema("shelve", "Shelve alarms", "alarms.shelve_alarm")
    def post(self, request: Request) -> Response:
        return super().post(request)


class UnshelveView(AlarmActionView):
    action_name = "unshelve"
    serializer_class = UnshelveSerializer
    permission_classes = [permission("alarms.shelve_alarm", "unshelve alarms")]

    @_action_schema("unshelve", "Unshelve alarms", "alarms.shelve_alarm")
    def post(self, request: Request) -> Response:
        return super().post(request)


# ---- definitions and classes --------------------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.STR)
class NameField(serializers.SlugRelatedField):
    """Another object, by its name (a JSON string)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            raise ValidationError(f"Expected a name (a string), got {json_type(data)}.")
        if "\x00" in data or len(data) > 160:
            raise ValidationError("Not a valid name.")
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.STR)
class PointNameField(NameField):
    """A point, by its name: only the points of the caller's sites; another site's point is an unknown name."""

    def get_queryset(self) -> QuerySet[Point]:
        request = self.context.get("request")
        points = Point.objects.all()
        return points if request is None else in_sites(points, request_site_ids(request), "device__site")


class ModelValidationMixin:
    """Turn the model's own refusals (``full_clean`` in ``save``) into a 400 with the API's field names."""

    #: model field -> API field, where they differ
    api_names = {"alarm_class": "class", "__all__": "non_field_errors"}

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        self._saved(serializer)

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        self._saved(serializer)

    def _saved(self, serializer: serializers.BaseSerializer) -> None:
        try:
            with transaction.atomic():
                serializer.save()
        except DjangoValidationError as exc:
            raise self.invalid(exc) from exc

    def invalid(self, exc: DjangoValidationError) -> ValidationError:
        detail = as_serializer_error(exc)
        return ValidationError({self.api_names.get(name, name): messages for name, messages in detail.items()})


class AlarmClassSerializer(StrictModelSerializer):
    """A class of alarms: default priority, colour, whether its alarms need acknowledging and are annunciated."""

    class Meta:
        model = AlarmClass
        fields = ["id", "name", "description", "default_priority", "colour", "ack_required", "annunciated"]


def _kinds() -> str:
    return ", ".join(value for value, _label in AlarmDefinition.KINDS)


class AlarmDefinitionSerializer(RenamedFieldsMixin, StrictModelSerializer):
    """One alarm condition on one point; points and the class are named, not numbered."""

    point = PointNameField(slug_field="name", queryset=Point.objects.all(), help_text="the point watched")
    class_ = NameField(source="alarm_class", slug_field="name", queryset=AlarmClass.objects.all(), help_text="class")
    setpoint_point = PointNameField(
        slug_field="name", queryset=Point.objects.all(), required=False, allow_null=True, help_text="deviation only"
    )
    suppression_point = PointNameField(
        slug_field="name", queryset=Point.objects.all(), required=False, allow_null=True, help_text="a bool point"
    )

    class Meta:
        model = AlarmDefinition
        fields = [
            "id",
            "name",
            "point",
            "kind",
            "limit",
            "deadband",
            "on_delay",
            "off_delay",
            "alarm_value",
            "setpoint_point",
            "rate_per_minute",
            "quality_delay",
            "priority",
            "class_",
            "area",
            "message",
            "ack_required",
            "realarm_seconds",
            "suppression_point",
            "enabled",
            "out_of_service",
            "out_of_service_by",
            "out_of_service_at",
        ]
        read_only_fields = ["out_of_service", "out_of_service_by", "out_of_service_at"]
        extra_kwargs = {"kind": {"error_messages": {"invalid_choice": "Unknown kind {input!r}; use " + _kinds() + "."}}}


class DefinitionQuerySerializer(RenamedFieldsMixin, serializers.Serializer):
    """Filters of the definition list."""

    point = MultiValueField(child=serializers.CharField(max_length=128), help_text="point names")
    class_ = MultiValueField(child=serializers.CharField(max_length=64), help_text="alarm classes")
    area = MultiValueField(commas=False, child=serializers.CharField(max_length=128), help_text="areas (repeat)")
    kind = MultiValueField(child=serializers.ChoiceField(choices=AlarmDefinition.KINDS), help_text="kinds")


class OutOfServiceSerializer(StrictSerializer):
    """Take an alarm out of service (``true``) or put it back (``false``)."""

    out_of_service = StrictBooleanField()
    comment = StrictCharField(max_length=MAX_COMMENT_CHARS, allow_blank=True, required=False, default="")


class LookupMixin:
    """A missing object is a 404 that names what was looked for."""

    what = "object"

    def get_object(self) -> Any:
        try:
            return super().get_object()  # type: ignore[misc]
        except Http404 as exc:
            raise NotFound(f"There is no {self.what} with id {self.kwargs.get('pk')}.") from exc


@extend_schema_view(
    list=extend_schema(
        summary="Alarm classes", responses={200: AlarmClassSerializer(many=True), **error_responses(400)}
    ),
    retrieve=extend_schema(summary="One alarm class", responses={200: AlarmClassSerializer, **error_responses(404)}),
    create=extend_schema(
        summary="Create an alarm class", responses={201: AlarmClassSerializer, **error_responses(400, 403, 409)}
    ),
    update=extend_schema(
        summary="Replace an alarm class", responses={200: AlarmClassSerializer, **error_responses(400, 403, 404, 409)}
    ),
    partial_update=extend_schema(
        summary="Change an alarm class", responses={200: AlarmClassSerializer, **error_responses(400, 403, 404, 409)}
    ),
    destroy=extend_schema(
        summary="Delete an alarm class (not while definitions use it)",
        responses={204: None, **error_responses(403, 404, 409)},
    ),
)
class AlarmClassViewSet(LookupMixin, ModelValidationMixin, viewsets.ModelViewSet):
    """Alarm classes: read for every logged-in user, changed with the alarm-class permissions (engineers)."""

    queryset = AlarmClass.objects.all()
    serializer_class = AlarmClassSerializer
    permission_classes = [ModelPermissions]
    what = "alarm class"


@extend_schema_view(
    list=extend_schema(
        summary="Alarm definitions",
        parameters=[DefinitionQuerySerializer],
        responses={200: AlarmDefinitionSerializer(many=True), **error_responses(400)},
    ),
    retrieve=extend_schema(
        summary="One alarm definition", responses={200: AlarmDefinitionSerializer, **error_responses(404)}
    ),
    create=extend_schema(
        summary="Create an alarm definition",
        description="Checked whole by the model: each refusal is a message under its field.",
        responses={201: AlarmDefinitionSerializer, **error_responses(400, 403, 409)},
    ),
    update=extend_schema(
        summary="Replace an alarm definition",
        responses={200: AlarmDefinitionSerializer, **error_responses(400, 403, 404, 409)},
    ),
    partial_update=extend_schema(
        summary="Change an alarm definition",
        responses={200: AlarmDefinitionSerializer, **error_responses(400, 403, 404, 409)},
    ),
    destroy=extend_schema(summary="Delete an alarm definition", responses={204: None, **error_responses(403, 404)}),
)
class AlarmDefinitionViewSet(LookupMixin, ModelValidationMixin, viewsets.ModelViewSet):
    """Alarm definitions: read for every logged-in user, changed with the definition permissions (engineers)."""

    queryset = AlarmDefinition.objects.select_related("point", "alarm_class", "setpoint_point", "suppression_point")
    serializer_class = AlarmDefinitionSerializer
    permission_classes = [ModelPermissions]
    what = "alarm definition"

    def get_queryset(self) -> QuerySet[AlarmDefinition]:
        # another site's definition is a 404 like one that does not exist, for reads, writes and out-of-service
        return definitions_in_sites(super().get_queryset(), request_site_ids(self.request))

    def get_permissions(self) -> list[Any]:
        if self.action == "out_of_service":
            return [permission("alarms.set_out_of_service", "take alarms out of service or put them back")()]
        return super().get_permissions()

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "out_of_service":
            return OutOfServiceSerializer
        return super().get_serializer_class()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        query = parse_query(request, DefinitionQuerySerializer)
        rows = self.get_queryset()
        for name, lookup in (("point", "point__name__in"), ("class", "alarm_class__name__in"), ("area", "area__in")):
            if query.get(name):
                rows = rows.filter(**{lookup: query[name]})
        if query.get("kind"):
            rows = rows.filter(kind__in=query["kind"])
        page = self.paginate_queryset(rows.order_by("name"))
        return self.get_paginated_response(AlarmDefinitionSerializer(page, many=True).data)

    @extend_schema(
        operation_id="alarm_definitions_out_of_service",
        summary="Take an alarm out of service, or put it back",
        description="Needs `alarms.set_out_of_service`. Who and when are kept with the flag; the comment goes to "
        "the audit trail.",
        request=OutOfServiceSerializer,
        responses={200: AlarmDefinitionSerializer, **error_responses(400, 403, 404)},
    )
    def out_of_service(self, request: Request, pk: str) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        flag, comment = body.validated_data["out_of_service"], body.validated_data["comment"]
        username = request.user.get_username()
        with transaction.atomic():
            definition = self.get_object()
            try:
                definition.set_out_of_service(flag, username)
            except DjangoValidationError as exc:
                raise self.invalid(exc) from exc
            AuditEntry.objects.create(
                user=request.user,
                username=username,
                action="alarm.out_of_service" if flag else "alarm.in_service",
                target=definition.name[:128],
                detail={"alarm": definition.name, "out_of_service": flag, "comment": comment, "via": "api"},
            )
        return Response(AlarmDefinitionSerializer(definition).data)
