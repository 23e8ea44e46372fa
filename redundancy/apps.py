from django.apps import AppConfig


class RedundancyConfig(AppConfig):
    name = "redundancy"
    verbose_name = "Redundancy (hot-standby pair)"
