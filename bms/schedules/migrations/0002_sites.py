"""Schedules belong to a site (existing ones to the default site ``main``, made here if missing); calendars may."""

import django.db.models.deletion
from django.db import migrations, models

import bms.sites.models


def to_default_site(apps, schema_editor):
    Site = apps.get_model("sites", "Site")
    Schedule = apps.get_model("schedules", "Schedule")
    if not Schedule.objects.filter(site__isnull=True).exists():
        return  # nothing to move: an empty install gets no site from here
    site, _ = Site.objects.get_or_create(name="main", defaults={"title": "Main site"})
    Schedule.objects.filter(site__isnull=True).update(site=site)


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0001_initial"),
        ("sites", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="schedule",
            name="site",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="schedules", to="sites.site"
            ),
        ),
        migrations.RunPython(to_default_site, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="schedule",
            name="site",
            field=models.ForeignKey(
                default=bms.sites.models.default_site_id,
                help_text="the building it belongs to: it writes only points of this site and uses its calendars",
                on_delete=django.db.models.deletion.PROTECT,
                related_name="schedules",
                to="sites.site",
            ),
        ),
        migrations.AddField(
            model_name="calendar",
            name="site",
            field=models.ForeignKey(
                blank=True,
                help_text="the building whose schedules may use it; blank: shared by every site (e.g. public holidays)",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="calendars",
                to="sites.site",
            ),
        ),
    ]
