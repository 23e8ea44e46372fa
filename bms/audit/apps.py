"""The audit app: the configuration change recorder (bms/audit/changes.py); its rows are AuditEntry history rows."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "bms.audit"
    label = "audit"
    verbose_name = "Audit"

    def ready(self) -> None:
        from bms.audit import changes

        changes.connect()
