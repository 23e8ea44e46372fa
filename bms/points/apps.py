from django.apps import AppConfig


class PointsConfig(AppConfig):
    name = "bms.points"
    label = "points"
    verbose_name = "Devices and points"

    def ready(self) -> None:
        from bms.points import signals  # noqa: F401  (connects the revision bump)
