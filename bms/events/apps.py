from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "bms.events"
    label = "events"
    verbose_name = "Event log"
