from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from bms.api import bacnet_views as bacnet_api
from bms.api import views as api
from bms.api.v1 import trends as trends_api
from bms.tokens import views as tokens_web
from bms.web import alarm_views as alarms_web
from bms.web import bacnet_views as bacnet_web
from bms.web import logic_views as logic_web
from bms.web import schedule_views as schedules_web
from bms.web import trend_views as trends_web
from bms.web import views as web
from redundancy import views as pair

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="points", permanent=False)),
    path("login/", auth_views.LoginView.as_view(template_name="web/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("points/", web.points, name="points"),
    path("events/", web.events, name="events"),
    path("trends/", trends_web.page, name="trends"),
    path("alarms/", alarms_web.console, name="alarms"),
    path("alarms/action", alarms_web.action, name="alarms-action"),
    path("alarms/journal/", alarms_web.journal, name="alarm-journal"),
    path("alarms/journal.csv", alarms_web.journal_csv, name="alarm-journal-csv"),
    path("schedules/", schedules_web.schedule_list, name="schedules"),
    path("schedules/new/", schedules_web.schedule_editor, name="schedule-new"),
    path("schedules/<int:pk>/", schedules_web.schedule_editor, name="schedule-edit"),
    path("logic/", logic_web.rules, name="logic"),
    path("account/tokens/", tokens_web.tokens, name="api-tokens"),
    path("account/tokens/<int:pk>/revoke", tokens_web.revoke_token, name="api-token-revoke"),
    path("bacnet/discover/", bacnet_web.discover, name="bacnet-discover"),
    path("redundancy/", pair.page, name="redundancy"),
    path("redundancy/follow-token", pair.follow_token, name="redundancy-follow-token"),
    path("redundancy/follow", pair.follow, name="redundancy-follow"),
    path("healthz", pair.healthz, name="healthz"),
    path("healthz/active", pair.healthz_active, name="healthz-active"),
    path("metrics", pair.metrics, name="metrics"),
    path("api/points/", api.points, name="api-points"),
    path("api/points/<str:name>/", api.point_detail, name="api-point"),
    path("api/points/<str:name>/write", api.point_write, name="api-point-write"),
    path("api/points/<str:name>/priority-array", bacnet_api.priority_array, name="api-point-priority-array"),
    path("api/commands/<str:command_id>/", api.command_detail, name="api-command"),
    path("api/redundancy/status", pair.api_status, name="api-redundancy-status"),
    path("api/redundancy/switchover", pair.api_switchover, name="api-redundancy-switchover"),
    path("api/trends/", trends_api.TrendAliasView.as_view(), name="api-trends"),  # alias of /api/v1/trends/
    path("api/trends/csv", trends_api.TrendExportAliasView.as_view(), name="api-trends-csv"),
    path("api/v1/", include("bms.api.v1.urls")),  # the REST API (docs/api.md)
    path("admin/", admin.site.urls),
]

# JSON errors under /api/v1/ (Django's pages elsewhere): bms/api/v1/errors.py
handler400 = "bms.api.v1.errors.handler400"
handler404 = "bms.api.v1.errors.handler404"
handler500 = "bms.api.v1.errors.handler500"
