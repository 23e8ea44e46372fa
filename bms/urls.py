from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from bms.api import views as api
from bms.web import views as web

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="points", permanent=False)),
    path("login/", auth_views.LoginView.as_view(template_name="web/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("points/", web.points, name="points"),
    path("events/", web.events, name="events"),
    path("healthz", web.healthz, name="healthz"),
    path("api/points/", api.points, name="api-points"),
    path("api/points/<str:name>/", api.point_detail, name="api-point"),
    path("api/points/<str:name>/write", api.point_write, name="api-point-write"),
    path("api/commands/<str:command_id>/", api.command_detail, name="api-command"),
    path("admin/", admin.site.urls),
]
