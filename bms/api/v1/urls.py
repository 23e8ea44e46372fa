"""Routes of ``/api/v1/`` (included by bms/urls.py). The last one answers every other path with a JSON 404.

Collections and objects end in ``/``; actions on them do not (``alarms/acknowledge``,
``alarm-definitions/<id>/out-of-service``), like the older ``/api/points/<name>/write``.
"""

from django.urls import include, path, re_path

from bms.api.v1 import alarms, docs, errors, pair, priority, trends

definitions = alarms.AlarmDefinitionViewSet
classes = alarms.AlarmClassViewSet
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
    path(
        "points/<str:name>/priority-array",
        priority.PriorityArrayView.as_view(),
        name="api-v1-point-priority-array",
    ),
    path("trends/", include(trends)),  # trends/ and trends/csv (bms/api/v1/trends.py)
    path("redundancy/status", pair.RedundancyStatusView.as_view(), name="api-v1-redundancy-status"),
    re_path(r"^(?P<path>.*)$", errors.not_found, name="api-v1-not-found"),
]
