"""The web manager's alarm pages: the live console, its operator actions, and the journal with its CSV export.

The console (``/alarms/``) is rendered once and then lives on the websocket
(``static/bms/alarms.js``): alarm states are entries ``alarm:<name>`` and
``alarms:summary`` of the same stream as point values (docs/live-protocol.md).
Its actions post JSON to :func:`action`, which checks the user's permission
and hands them to :func:`bms.alarms.actions.perform`, the one path every
acknowledgement and shelving takes (the REST API uses it too). On a node that
is not active the request never gets here: the read-only guard
(``redundancy.middleware``) answers 503 and records the refusal.

The journal (``/alarms/journal/``) pages through :class:`~bms.alarms.models.AlarmJournal`
newest first; ``/alarms/journal.csv`` streams the same selection, at most
:data:`EXPORT_MAX_ROWS` rows.

A user restricted to some sites (:mod:`bms.sites.scope`) sees and acts on the alarms of those sites only (an
alarm's site is its point's): the console's live entries come scoped from the websocket, the journal, its export
and the areas offered leave other sites out, and an action naming another site's alarm is refused like one naming
an alarm that does not exist.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from bms.alarms.actions import UNKNOWN_ALARM, ActionResult, NotActive, perform
from bms.alarms.live import definitions_in_sites
from bms.alarms.models import AlarmClass, AlarmDefinition, AlarmJournal
from bms.alarms.states import SHELVE_DEFAULT_SECONDS, SHELVE_MAX_SECONDS, TransitionKind
from bms.api.v1.parsers import MalformedJSON
from bms.api.v1.parsers import loads as bounded_json
from bms.realtime.snapshot import EngineUnavailable
from bms.sites.scope import ALL, SiteIds, named_in_sites, request_site_ids

log = logging.getLogger(__name__)

#: operator actions and the permission each needs
ACTION_PERMISSIONS = {
    "acknowledge": "alarms.acknowledge_alarm",
    "shelve": "alarms.shelve_alarm",
    "unshelve": "alarms.shelve_alarm",
}
#: the most alarms one request may name (a console selection, not a bulk tool)
MAX_ALARMS_PER_ACTION = 500
MAX_COMMENT_CHARS = 1000
MAX_BODY_BYTES = 64 * 1024
#: journal rows per page
JOURNAL_PAGE_ROWS = 100
#: the most rows one CSV export streams (newest first); narrow the filters for older rows
EXPORT_MAX_ROWS = 100_000
EXPORT_COLUMNS = (
    "time",
    "alarm",
    "point",
    "transition",
    "state",
    "value",
    "priority",
    "class",
    "area",
    "message",
    "user",
    "comment",
    "count",
    "node",
    "recovered",
)
#: cells a spreadsheet would run as a formula: prefixed with ' in text columns
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


#: durations the shelve dialog offers (seconds, label)
SHELVE_DURATIONS = (
    (SHELVE_DEFAULT_SECONDS, "15 minutes"),
    (3600, "1 hour"),
    (4 * 3600, "4 hours"),
    (8 * 3600, "8 hours"),
)


def shelve_max_seconds() -> float:
    """The longest shelving this site allows (``BMS_ALARM_SHELVE_MAX_SECONDS``, default 8 h)."""
    return float(getattr(settings, "BMS_ALARM_SHELVE_MAX_SECONDS", SHELVE_MAX_SECONDS))


def shelve_choices() -> list[tuple[int, str]]:
    """Durations offered in the shelve dialog, in seconds, none longer than the site's maximum."""
    longest = shelve_max_seconds()
    choices = [(seconds, label) for seconds, label in SHELVE_DURATIONS if seconds <= longest]
    if not choices or choices[-1][0] < longest:
        choices.append((int(longest), f"{_duration(longest)} (the longest allowed)"))
    return choices


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = round(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


# ---- the console -----------------------------------------------------------------------------------------------


@login_required
@require_GET
def console(request: HttpRequest) -> HttpResponse:
    """The live alarm console; what it shows arrives over the websocket."""
    user = request.user
    return render(
        request,
        "web/alarms.html",
        {
            "classes": AlarmClass.objects.filter(annunciated=True),
            "areas": _areas(request_site_ids(request)),
            "states": CONSOLE_STATES,
            "can_acknowledge": user.has_perm(ACTION_PERMISSIONS["acknowledge"]),
            "can_shelve": user.has_perm(ACTION_PERMISSIONS["shelve"]),
            "shelve_choices": shelve_choices(),
            "shelve_max": int(shelve_max_seconds()),
            "shelve_default": int(getattr(settings, "BMS_ALARM_SHELVE_DEFAULT_SECONDS", SHELVE_DEFAULT_SECONDS)),
        },
    )


#: the console's state filter: value, label (static/bms/alarms.js knows what each selects)
CONSOLE_STATES = (
    ("attention", "Needs attention (active or unacknowledged)"),
    ("unacked", "Unacknowledged"),
    ("active", "Active"),
    ("shelved", "Shelved"),
    ("suppressed", "Suppressed by design"),
    ("out_of_service", "Out of service"),
    ("all", "All alarms, normal included"),
)


def _areas(ids: SiteIds) -> list[str]:
    rows = definitions_in_sites(AlarmDefinition.objects.all(), ids)
    return sorted(a for a in rows.values_list("area", flat=True).distinct() if a)


def _unknown_alarms(names: list[str], ids: SiteIds) -> list[str]:
    """The names that are not alarms of the sites ``ids`` (another site's alarm is not there for the caller)."""
    known = set(
        definitions_in_sites(AlarmDefinition.objects.filter(name__in=names), ids).values_list("name", flat=True)
    )
    return [name for name in names if name not in known]


class ActionInvalid(ValueError):
    """The request does not describe an action the console can send (a 400 with this message)."""


@login_required
@require_POST
def action(request: HttpRequest) -> JsonResponse:
    """Acknowledge, shelve or unshelve alarms: a JSON body ``{"action", "alarms": [names], "comment", ...}``.

    ``seconds`` (shelve only) is the shelving's duration, ``until_normal``
    shelves until the alarm returns to normal (both capped by the engine at the
    site's maximum). The answer is the :class:`~bms.alarms.actions.ActionResult`
    as JSON: ``done`` and ``unchanged`` (lists of names) and ``refused`` (name ->
    why).
    """
    try:
        wanted = _parse_action(request)
    except ActionInvalid as exc:
        return JsonResponse({"error": "invalid", "message": str(exc)}, status=400)
    permission = ACTION_PERMISSIONS[wanted["action"]]
    if not request.user.has_perm(permission):
        verb = "acknowledge alarms" if wanted["action"] == "acknowledge" else "shelve or unshelve alarms"
        return JsonResponse({"error": "forbidden", "message": f"You may not {verb}."}, status=403)
    named = wanted["alarms"]
    ids = request_site_ids(request)
    # A restricted user's names are checked here, against its sites' alarms: another site's alarm and one that does
    # not exist are both refused with the engine's words for an unknown alarm, and neither reaches the engine, so
    # nothing tells them apart. An unrestricted user's names all go to the engine, as before.
    unseen = set() if ids is ALL else set(_unknown_alarms(named, ids))
    wanted["alarms"] = [name for name in named if name not in unseen]
    if not wanted["alarms"]:
        return JsonResponse({"action": wanted["action"], **_answer(ActionResult(), named, unseen)})

    try:
        result = perform(
            wanted["action"],
            wanted["alarms"],
            request.user.get_username(),
            comment=wanted["comment"],
            seconds=wanted["seconds"],
            until_normal=wanted["until_normal"],
        )
    except ValueError as exc:
        return JsonResponse({"error": "invalid", "message": str(exc)}, status=400)
    except NotActive as exc:
        # The web side still thought this node active (a switchover under way): the engine said no.
        message = f"This node is no longer the active one ({exc}); nothing was changed. Act on the active node."
        return JsonResponse({"error": "not_active", "message": message}, status=503)
    except EngineUnavailable as exc:
        log.warning("alarm %s of %s: the engine did not answer (%s)", wanted["action"], wanted["alarms"], exc)
        message = (
            "The engine did not answer in time; the action may or may not have been applied. "
            "Look at the console (or the journal) before repeating it."
        )
        return JsonResponse({"error": "engine_unavailable", "message": message}, status=503)
    return JsonResponse({"action": wanted["action"], **_answer(result, named, unseen)})


def _answer(result: ActionResult, named: list[str], unseen: set[str]) -> dict[str, Any]:
    """The engine's answer with the names it was not asked about refused as unknown, in the request's order."""
    answer = result.to_dict()
    if unseen:
        refused = result.refused
        answer["refused"] = {
            name: refused.get(name, UNKNOWN_ALARM) for name in named if name in refused or name in unseen
        }
    return answer


def _storable(text: str) -> bool:
    """Text the journal can hold: PostgreSQL refuses NUL, and UTF-8 cannot encode a lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_action(request: HttpRequest) -> dict[str, Any]:
    if len(request.body) > MAX_BODY_BYTES:
        raise ActionInvalid(f"the request is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = bounded_json(request.body or b"null")  # depth, number length, encoding: as the REST API
    except MalformedJSON as exc:
        raise ActionInvalid(f"the request body is not JSON within the limits ({exc})") from exc
    if not isinstance(body, dict):
        raise ActionInvalid("send a JSON object")
    verb = body.get("action")
    if verb not in ACTION_PERMISSIONS:
        raise ActionInvalid(f"unknown action {verb!r}; use {', '.join(ACTION_PERMISSIONS)}")
    names = body.get("alarms")
    if not isinstance(names, list) or not names or not all(isinstance(name, str) and name for name in names):
        raise ActionInvalid('"alarms" must be a list of alarm names')
    if not all(_storable(name) for name in names):
        raise ActionInvalid("alarm names contain a NUL or an unencodable character")
    if len(names) > MAX_ALARMS_PER_ACTION:
        raise ActionInvalid(f"at most {MAX_ALARMS_PER_ACTION} alarms at once")
    comment = body.get("comment") or ""
    if not isinstance(comment, str):
        raise ActionInvalid('"comment" must be text')
    if not _storable(comment):
        raise ActionInvalid("the comment contains a NUL or an unencodable character")
    if len(comment) > MAX_COMMENT_CHARS:
        raise ActionInvalid(f"the comment is longer than {MAX_COMMENT_CHARS} characters")
    seconds = body.get("seconds")
    until_normal = body.get("until_normal", False)
    if not isinstance(until_normal, bool):
        raise ActionInvalid('"until_normal" must be true or false')
    if verb != "shelve":
        if seconds is not None or until_normal:
            raise ActionInvalid(f"{verb} takes no duration")
    elif seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 10**7:
            raise ActionInvalid('"seconds" must be a number of seconds above 0')
    return {
        "action": verb,
        "alarms": list(dict.fromkeys(names)),
        "comment": comment.strip(),
        "seconds": seconds,
        "until_normal": until_normal,
    }


# ---- the journal -----------------------------------------------------------------------------------------------


TIME_INPUT = forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S")


class JournalFilter(forms.Form):
    """The journal's filters (all optional; times in UTC, as everywhere in the web manager)."""

    TIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]

    alarm = forms.CharField(required=False, max_length=160, help_text="part of the alarm's name")
    point = forms.CharField(required=False, max_length=128, help_text="part of the point's name")
    transition = forms.ChoiceField(required=False)
    # free text with the configured names offered (a datalist): rows outlive the definitions and classes they name
    alarm_class = forms.CharField(
        required=False, max_length=64, label="Class", widget=forms.TextInput(attrs={"list": "journal-classes"})
    )
    area = forms.CharField(required=False, max_length=128, widget=forms.TextInput(attrs={"list": "journal-areas"}))
    since = forms.DateTimeField(required=False, input_formats=TIME_FORMATS, label="From (UTC)", widget=TIME_INPUT)
    until = forms.DateTimeField(required=False, input_formats=TIME_FORMATS, label="To (UTC)", widget=TIME_INPUT)

    def __init__(self, *args: Any, ids: SiteIds = ALL, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ids = ids  # the sites whose rows the caller sees
        self.fields["transition"].choices = [("", "any")] + [
            (kind.value, kind.value.replace("_", " ")) for kind in TransitionKind
        ]
        self.classes = list(AlarmClass.objects.values_list("name", flat=True))
        self.areas = _areas(ids)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "'To' is before 'From'.")
        return data

    def rows(self) -> QuerySet[AlarmJournal]:
        """Every row the caller may see (its sites' points'), newest first."""
        return named_in_sites(AlarmJournal.objects.all(), self.ids).order_by("-time", "-id")

    def queryset(self) -> QuerySet[AlarmJournal]:
        """The journal rows the valid filters select, newest first (invalid filters select nothing)."""
        if not self.is_valid():
            return AlarmJournal.objects.none()
        data = self.cleaned_data
        rows = self.rows()
        if data["alarm"]:
            rows = rows.filter(alarm__icontains=data["alarm"].strip())
        if data["point"]:
            rows = rows.filter(point_name__icontains=data["point"].strip())
        if data["transition"]:
            rows = rows.filter(transition=data["transition"])
        if data["alarm_class"].strip():
            rows = rows.filter(alarm_class__iexact=data["alarm_class"].strip())
        if data["area"].strip():
            rows = rows.filter(area__iexact=data["area"].strip())
        if data["since"]:
            rows = rows.filter(time__gte=data["since"])
        if data["until"]:
            rows = rows.filter(time__lte=data["until"])
        return rows.order_by("-time", "-id")


@login_required
@require_GET
def journal(request: HttpRequest) -> HttpResponse:
    """The alarm journal, newest first, a page at a time, with filters and a link to export the selection."""
    ids = request_site_ids(request)
    form = JournalFilter(request.GET or None, ids=ids)
    rows = form.queryset() if request.GET else form.rows()
    page = Paginator(rows, JOURNAL_PAGE_ROWS).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "web/alarm_journal.html",
        {
            "form": form if request.GET else JournalFilter(ids=ids),
            "page": page,
            "query": query.urlencode(),
            "export_max": EXPORT_MAX_ROWS,
            "page_rows": JOURNAL_PAGE_ROWS,
        },
    )


@login_required
@require_GET
def journal_csv(request: HttpRequest) -> HttpResponse:
    """The filtered journal as CSV, streamed, newest first, at most :data:`EXPORT_MAX_ROWS` rows.

    Bad filters are a 400 naming them (an export must never silently ignore a
    filter). The header ``X-BMS-Export-Truncated: yes`` says the selection had
    more rows than were exported.
    """
    form = JournalFilter(request.GET, ids=request_site_ids(request))
    if not form.is_valid():
        problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())
        return HttpResponse(f"Bad filter: {problems}\n", status=400, content_type="text/plain; charset=utf-8")
    rows = form.queryset()
    truncated = rows[EXPORT_MAX_ROWS : EXPORT_MAX_ROWS + 1].exists()
    response = StreamingHttpResponse(_csv_lines(rows[:EXPORT_MAX_ROWS]), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="alarm-journal-{settings.BMS_NODE_NAME}-{stamp}.csv"'
    response["X-BMS-Export-Truncated"] = "yes" if truncated else "no"
    response["Cache-Control"] = "no-store"
    return response


class _Line:
    """A file-like target for csv.writer that hands back the line just written."""

    def write(self, text: str) -> str:
        return text


def _csv_lines(rows: QuerySet[AlarmJournal]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(EXPORT_COLUMNS)
    fields = (
        *("time", "alarm", "point_name", "transition", "state", "value", "priority", "alarm_class", "area"),
        *("message", "username", "comment", "count", "origin", "recovered"),
    )
    for row in rows.values_list(*fields).iterator(chunk_size=2000):
        record = dict(zip(fields, row, strict=True))
        yield writer.writerow(
            [
                _utc(record["time"]),
                *(_text(record[f]) for f in ("alarm", "point_name")),
                record["transition"],
                record["state"],
                _value(record["value"]),
                "" if record["priority"] is None else record["priority"],
                *(_text(record[f]) for f in ("alarm_class", "area", "message", "username", "comment")),
                record["count"],
                _text(record["origin"]),
                "yes" if record["recovered"] else "no",
            ]
        )


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return _text(json.dumps(value))


def _text(text: str) -> str:
    """Text as a spreadsheet will show it, never run: a leading formula character is escaped with '."""
    return "'" + text if text and text.startswith(FORMULA_STARTS) else text
