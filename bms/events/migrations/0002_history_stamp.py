from django.db import migrations, models

from bms.history.numbering import number_existing


def stamp(apps, schema_editor):
    number_existing(apps, "events", "Event", "time")


class Migration(migrations.Migration):
    dependencies = [("events", "0001_initial"), ("history", "0001_initial")]

    operations = [
        migrations.AddField(
            "event", "epoch", models.BigIntegerField(default=0, help_text="fencing epoch when it was written")
        ),
        migrations.AddField(
            "event",
            "origin_seq",
            models.BigIntegerField(default=0, help_text="position in its origin's history stream"),
        ),
        migrations.AlterField(
            "event",
            "origin",
            models.CharField(max_length=64, help_text="node that wrote this row (or its latest change)"),
        ),
        migrations.RunPython(stamp, migrations.RunPython.noop),
        migrations.AddConstraint(
            "event", models.UniqueConstraint(fields=["origin", "origin_seq"], name="events_event_stamp")
        ),
    ]
