"""The logic app: rule configuration; the engine runs the rules (bms.logic.runner)."""

from django.apps import AppConfig


class LogicConfig(AppConfig):
    name = "bms.logic"
    label = "logic"
    verbose_name = "Logic"

    def ready(self) -> None:
        from bms.logic import signals  # noqa: F401  (connects the revision bump)
