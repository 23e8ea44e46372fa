"""The trends app: samples, roll-ups and their upkeep; puts the periodic work on Celery beat's schedule."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TrendsConfig(AppConfig):
    """Registers the roll-up and storage upkeep tasks with Celery beat (they act only on the active node), and
    creates the node's health points after ``migrate`` (:mod:`bms.trends.provision`)."""

    name = "bms.trends"
    label = "trends"
    verbose_name = "Trends"

    def ready(self) -> None:
        from bms.celery import app
        from bms.trends.provision import ensure_node_health_points

        post_migrate.connect(ensure_node_health_points, sender=self, dispatch_uid="bms.trends.node_health_points")
        from bms.trends.tasks import beat_entries

        # beat reads the schedule after Django is set up; an entry the site configured itself under the same name wins
        schedule = dict(app.conf.beat_schedule or {})
        for name, entry in beat_entries().items():
            schedule.setdefault(name, entry)
        app.conf.beat_schedule = schedule
