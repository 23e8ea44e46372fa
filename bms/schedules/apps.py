"""The schedules app: calendars, schedules, exceptions and their targets (BACnet Schedule and Calendar)."""

from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    name = "bms.schedules"
    label = "schedules"
    verbose_name = "Schedules"

    def ready(self) -> None:
        from bms.schedules import signals  # noqa: F401  (connects the revision bump)
