from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "bms.realtime"
    label = "realtime"
