from django.apps import AppConfig


class HistoryConfig(AppConfig):
    name = "bms.history"
    label = "history"
    verbose_name = "History stamping"
