from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="OriginCounter",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("origin", models.CharField(max_length=64, unique=True)),
                ("value", models.BigIntegerField(default=0)),
                ("epoch", models.BigIntegerField(default=0)),
            ],
        ),
    ]
