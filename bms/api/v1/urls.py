"""Routes of ``/api/v1/`` (included by bms/urls.py). The last one answers every other path with a JSON 404.

Collections and objects end in ``/``; actions on them do not (``alarms/acknowledge``,
``alarm-definitions/<id>/out-of-service``), like the older ``/api/points/<name>/write``.
"""

from django.urls import include, path, re_path

from bms.api.v1 import (
    alarms,
    audit,
    commands,
    devices,
    docs,
    errors,
    events,
    logic,
    pair,
    points,
    priority,
    schedules,
    sites,
    trends,
)

definitions = alarms.AlarmDefinitionViewSet
classes = alarms.AlarmClassViewSet
schedule_set = schedules.ScheduleViewSet
calendar_set = schedules.CalendarViewSet
rule_set = logic.RuleViewSet
site_set = sites.SiteViewSet
device_set = devices.DeviceViewSet
CRUD_LIST = {"get": "list", "post": "create"}
CRUD_ONE = {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
ID = "<int:pk>"

urlpatterns = [
    path("schema/", docs.SchemaView.as_view(), name="api-v1-schema"),
    path("docs/", docs.SwaggerView.as_view(), name="api-v1-docs"),
    path("redoc/", docs.RedocView.as_view(), name="api-v1-redoc"),
    path("alarms/", alarms.LiveAlarmsView.as_view(), name="api-v1-alarms"),
    path("alarms/journal/", alarms.JournalView.as_view(), name="api-v1-alarm-journal"),
    path("alarms/acknowledge", alarms.AcknowledgeView.as_view(), name="api-v1-alarms-acknowledge"),
    path("alarms/shelve", alarms.ShelveView.as_view(), name="api-v1-alarms-shelve"),
    path("alarms/unshelve", alarms.UnshelveView.as_view(), name="api-v1-alarms-unshelve"),
    path(
        "alarm-definitions/",
        definitions.as_view({"get": "list", "post": "create"}),
        name="api-v1-alarm-definitions",
    ),
    path(
        f"alarm-definitions/{ID}/",
        definitions.as_view({"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}),
        name="api-v1-alarm-definition",
    ),
    path(
        f"alarm-definitions/{ID}/out-of-service",
        definitions.as_view({"post": "out_of_service"}),
        name="api-v1-alarm-definition-out-of-service",
    ),
    path("alarm-classes/", classes.as_view({"get": "list", "post": "create"}), name="api-v1-alarm-classes"),
    path(
        f"alarm-classes/{ID}/",
        classes.as_view({"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}),
        name="api-v1-alarm-class",
    ),
    # sites, devices, points, commands, events, audit (issue 13 item 1; scoped by site, ADR 0021)
    path("sites/", site_set.as_view(CRUD_LIST), name="api-v1-sites"),
    path(f"sites/{ID}/", site_set.as_view(CRUD_ONE), name="api-v1-site"),
    path("devices/", device_set.as_view(CRUD_LIST), name="api-v1-devices"),
    path(f"devices/{ID}/", device_set.as_view(CRUD_ONE), name="api-v1-device"),
    path("points/", points.PointListView.as_view(), name="api-v1-points"),
    path("points/<str:name>/", points.PointDetailView.as_view(), name="api-v1-point"),
    path("points/<str:name>/write", points.PointWriteView.as_view(), name="api-v1-point-write"),
    path("points/<str:name>/relinquish", points.PointRelinquishView.as_view(), name="api-v1-point-relinquish"),
    path("commands/", commands.CommandListView.as_view(), name="api-v1-commands"),
    path("commands/<str:command_id>/", commands.CommandDetailView.as_view(), name="api-v1-command"),
    path("events/", events.EventListView.as_view(), name="api-v1-events"),
    path("audit/", audit.AuditListView.as_view(), name="api-v1-audit"),
    path(
        "points/<str:name>/priority-array",
        priority.PriorityArrayView.as_view(),
        name="api-v1-point-priority-array",
    ),
    # schedules, calendars and logic rules (bms/api/v1/schedules.py, bms/api/v1/logic.py)
    path("schedules/", schedule_set.as_view(CRUD_LIST), name="api-v1-schedules"),
    path(f"schedules/{ID}/", schedule_set.as_view(CRUD_ONE), name="api-v1-schedule"),
    path(
        f"schedules/{ID}/next-transitions",
        schedule_set.as_view({"get": "next_transitions"}),
        name="api-v1-schedule-next-transitions",
    ),
    path("calendars/", calendar_set.as_view(CRUD_LIST), name="api-v1-calendars"),
    path("calendars/import", calendar_set.as_view({"post": "import_ical"}), name="api-v1-calendars-import"),
    path(f"calendars/{ID}/", calendar_set.as_view(CRUD_ONE), name="api-v1-calendar"),
    path(f"calendars/{ID}/ical", calendar_set.as_view({"get": "export_ical"}), name="api-v1-calendar-ical"),
    path("rules/", rule_set.as_view(CRUD_LIST), name="api-v1-rules"),
    path("rules/live", rule_set.as_view({"get": "live"}), name="api-v1-rules-live"),
    path(f"rules/{ID}/", rule_set.as_view(CRUD_ONE), name="api-v1-rule"),
    path(f"rules/{ID}/enable", rule_set.as_view({"post": "enable"}), name="api-v1-rule-enable"),
    path(f"rules/{ID}/disable", rule_set.as_view({"post": "disable"}), name="api-v1-rule-disable"),
    path("trends/", include(trends)),  # trends/ and trends/csv (bms/api/v1/trends.py)
    path("redundancy/status", pair.RedundancyStatusView.as_view(), name="api-v1-redundancy-status"),
    path("redundancy/switchover", pair.SwitchoverView.as_view(), name="api-v1-redundancy-switchover"),
    re_path(r"^(?P<path>.*)$", errors.not_found, name="api-v1-not-found"),
]
