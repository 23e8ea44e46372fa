from django.apps import AppConfig


class ControlConfig(AppConfig):
    name = "bms.control"
    label = "control"
    verbose_name = "Commands and audit"
