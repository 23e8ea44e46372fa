from django.apps import AppConfig


class AlarmsConfig(AppConfig):
    name = "bms.alarms"
    label = "alarms"
    verbose_name = "Alarms"

    def ready(self) -> None:
        from bms.alarms import signals  # noqa: F401  (connects the revision bump)
