from django.conf import settings
from django.db import migrations, models
from django.db.models import F

from bms.history.numbering import number_existing


def stamp(apps, schema_editor):
    apps.get_model("control", "Command").objects.update(origin=F("accepted_by"))
    apps.get_model("control", "AuditEntry").objects.update(origin=settings.BMS_NODE_NAME)
    number_existing(apps, "control", "Command", "created_at")
    number_existing(apps, "control", "AuditEntry", "time")


HELP = {
    "origin": "node that wrote this row (or its latest change)",
    "epoch": "fencing epoch when it was written",
    "origin_seq": "position in its origin's history stream",
}


class Migration(migrations.Migration):
    dependencies = [("control", "0001_initial"), ("history", "0001_initial")]

    operations = [
        migrations.RenameField("command", "origin", "accepted_by"),
        migrations.AddField(
            "command",
            "origin",
            models.CharField(max_length=64, default="", help_text=HELP["origin"]),
            preserve_default=False,
        ),
        migrations.AddField("command", "epoch", models.BigIntegerField(default=0, help_text=HELP["epoch"])),
        migrations.AddField("command", "origin_seq", models.BigIntegerField(default=0, help_text=HELP["origin_seq"])),
        migrations.AddField(
            "auditentry",
            "origin",
            models.CharField(max_length=64, default="", help_text=HELP["origin"]),
            preserve_default=False,
        ),
        migrations.AddField("auditentry", "epoch", models.BigIntegerField(default=0, help_text=HELP["epoch"])),
        migrations.AddField(
            "auditentry", "origin_seq", models.BigIntegerField(default=0, help_text=HELP["origin_seq"])
        ),
        migrations.RunPython(stamp, migrations.RunPython.noop),
        migrations.AddConstraint(
            "command", models.UniqueConstraint(fields=["origin", "origin_seq"], name="control_command_stamp")
        ),
        migrations.AddConstraint(
            "auditentry", models.UniqueConstraint(fields=["origin", "origin_seq"], name="control_auditentry_stamp")
        ),
    ]
