"""Every logic rule belongs to a site: existing rules go to the default site ``main`` (made here if missing)."""

import django.db.models.deletion
from django.db import migrations, models

import bms.sites.models


def to_default_site(apps, schema_editor):
    Site = apps.get_model("sites", "Site")
    Rule = apps.get_model("logic", "Rule")
    if not Rule.objects.filter(site__isnull=True).exists():
        return  # nothing to move: an empty install gets no site from here
    site, _ = Site.objects.get_or_create(name="main", defaults={"title": "Main site"})
    Rule.objects.filter(site__isnull=True).update(site=site)


class Migration(migrations.Migration):
    dependencies = [
        ("logic", "0001_initial"),
        ("sites", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="rule",
            name="site",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="rules", to="sites.site"
            ),
        ),
        migrations.RunPython(to_default_site, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="rule",
            name="site",
            field=models.ForeignKey(
                default=bms.sites.models.default_site_id,
                help_text="the building it belongs to: it reads and writes only points of this site",
                on_delete=django.db.models.deletion.PROTECT,
                related_name="rules",
                to="sites.site",
            ),
        ),
    ]
