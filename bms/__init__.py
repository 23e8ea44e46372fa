"""The BMS node: Django project, domain apps and the real-time engine."""

from bms.celery import app as celery_app

__all__ = ("celery_app",)
