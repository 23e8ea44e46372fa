"""The sites app: buildings that own devices and points, and which users and tokens may see which (docs/sites.md)."""

from django.apps import AppConfig


class SitesConfig(AppConfig):
    name = "bms.sites"
    label = "sites"
    verbose_name = "Sites"

    def ready(self) -> None:
        from bms.sites import signals  # noqa: F401  (connects the revision bump)
