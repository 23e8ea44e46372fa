"""Every device belongs to a site: existing devices go to the default site ``main`` (made here if missing)."""

import django.db.models.deletion
from django.db import migrations, models

import bms.sites.models


def to_default_site(apps, schema_editor):
    Site = apps.get_model("sites", "Site")
    Device = apps.get_model("points", "Device")
    site, _ = Site.objects.get_or_create(name="main", defaults={"title": "Main site"})
    Device.objects.filter(site__isnull=True).update(site=site)


class Migration(migrations.Migration):
    dependencies = [
        ("points", "0007_virtual_devices"),
        ("sites", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="device",
            name="site",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="devices", to="sites.site"
            ),
        ),
        migrations.RunPython(to_default_site, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="device",
            name="site",
            field=models.ForeignKey(
                default=bms.sites.models.default_site_id,
                help_text="the building this device (and its points) belongs to",
                on_delete=django.db.models.deletion.PROTECT,
                related_name="devices",
                to="sites.site",
            ),
        ),
    ]
