"""Django app registration for the engine (its management commands)."""

from django.apps import AppConfig


class EngineConfig(AppConfig):
    """Registers the engine's management commands (runengine, runbms); the engine has no models."""

    name = "bms.engine"
    label = "engine"
