"""The alarm classes every site starts with; edit them in the admin (a later change here never overwrites them)."""

from django.db import migrations

#: (name, default priority, colour, acknowledgement required, annunciated, description)
CLASSES = (
    ("critical", 100, "#b71c1c", True, True, "life safety or plant at risk: act at once"),
    ("high", 300, "#e65100", True, True, "act within minutes"),
    ("medium", 500, "#f9a825", True, True, "act within the shift"),
    ("low", 700, "#1565c0", True, True, "for information; act when convenient"),
    ("journal-only", 1000, "#757575", False, False, "recorded in the journal only: not shown on the console"),
)


def create_classes(apps, schema_editor):
    alarm_class = apps.get_model("alarms", "AlarmClass")
    for name, priority, colour, ack_required, annunciated, description in CLASSES:
        alarm_class.objects.get_or_create(
            name=name,
            defaults={
                "default_priority": priority,
                "colour": colour,
                "ack_required": ack_required,
                "annunciated": annunciated,
                "description": description,
            },
        )


def remove_unused_classes(apps, schema_editor):
    alarm_class = apps.get_model("alarms", "AlarmClass")
    names = [row[0] for row in CLASSES]
    alarm_class.objects.filter(name__in=names, definitions__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("alarms", "0001_initial")]

    operations = [migrations.RunPython(create_classes, remove_unused_classes)]
