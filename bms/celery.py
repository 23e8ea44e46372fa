"""Celery application: notifications, roll-ups and exports run here, never alarm detection."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bms.settings.embedded")

app = Celery("bms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
