from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "bms.api"
    label = "api"
