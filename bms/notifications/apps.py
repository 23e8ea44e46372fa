"""The notifications app: rules, recipients and the replicated outbox of alarm notifications."""

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """Connects the configuration-revision bump and puts the drain on Celery beat's schedule."""

    name = "bms.notifications"
    label = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from bms.celery import app
        from bms.notifications import signals  # noqa: F401  (connects the revision bump)
        from bms.notifications.tasks import SCHEDULE_NAME, beat_entry

        # beat reads the schedule after Django is set up (the Celery Django fixup calls django.setup()):
        # an entry the site configured itself under the same name wins
        schedule = dict(app.conf.beat_schedule or {})
        schedule.setdefault(SCHEDULE_NAME, beat_entry())
        app.conf.beat_schedule = schedule
