"""Trend samples and roll-ups (ADR 0015).

On PostgreSQL ``trends_sample`` and ``trends_hourly`` are range-partitioned by
time, which Django cannot express: their state is declared as usual, their
tables are made here by SQL. A unique key of a partitioned table must contain
the partition key, so the history stamp ``(origin, origin_seq)`` has a plain
index; the primary keys ``(point_id, time)`` / ``(point_id, bucket)`` carry it.
Partitions are made by ``bms.trends.partitions`` (ahead, and on demand).
"""

import django.db.models.deletion
from django.db import migrations, models

PARTITIONED_SQL = [
    'CREATE TABLE "trends_sample" ("origin" varchar(64) NOT NULL, "epoch" bigint NOT NULL, '
    '"origin_seq" bigint NOT NULL, "time" timestamp with time zone NOT NULL, "value" double precision NULL, '
    '"quality" smallint NOT NULL CHECK ("quality" >= 0), "point_id" bigint NOT NULL, '
    'PRIMARY KEY ("point_id", "time")) PARTITION BY RANGE ("time")',
    'CREATE INDEX "trends_sample_stamp" ON "trends_sample" ("origin", "origin_seq")',
    'CREATE INDEX "trends_sample_time" ON "trends_sample" USING brin ("time")',
    'CREATE TABLE "trends_hourly" ("origin" varchar(64) NOT NULL, "epoch" bigint NOT NULL, '
    '"origin_seq" bigint NOT NULL, "bucket" timestamp with time zone NOT NULL, "minimum" double precision NOT NULL, '
    '"maximum" double precision NOT NULL, "average" double precision NOT NULL, '
    '"samples" integer NOT NULL CHECK ("samples" >= 0), "last" double precision NOT NULL, '
    '"last_time" timestamp with time zone NOT NULL, "point_id" bigint NOT NULL, '
    'PRIMARY KEY ("point_id", "bucket")) PARTITION BY RANGE ("bucket")',
    'CREATE INDEX "trends_hourly_stamp" ON "trends_hourly" ("origin", "origin_seq")',
    'CREATE INDEX "trends_hourly_bucket" ON "trends_hourly" USING brin ("bucket")',
]
PARTITIONED_MODELS = ("Sample", "HourlyRollup")


def create_partitioned(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for statement in PARTITIONED_SQL:
            schema_editor.execute(statement)
        return
    for name in PARTITIONED_MODELS:
        schema_editor.create_model(apps.get_model("trends", name))


def drop_partitioned(apps, schema_editor) -> None:
    for name in PARTITIONED_MODELS:
        schema_editor.delete_model(apps.get_model("trends", name))


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("points", "0004_point_trend_settings"),
    ]

    operations = [
        migrations.CreateModel(
            name="RollupDue",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("tier", models.CharField(choices=[("hour", "hour"), ("day", "day")], max_length=8)),
                ("bucket", models.DateTimeField()),
                ("version", models.BigIntegerField(default=1)),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("tier", "bucket"), name="trends_rollupdue_bucket")],
            },
        ),
        migrations.CreateModel(
            name="DailyRollup",
            fields=[
                (
                    "origin",
                    models.CharField(help_text="node that wrote this row (or its latest change)", max_length=64),
                ),
                ("epoch", models.BigIntegerField(default=0, help_text="fencing epoch when it was written")),
                ("origin_seq", models.BigIntegerField(default=0, help_text="position in its origin's history stream")),
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "point", "bucket", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("bucket", models.DateTimeField(help_text="start of the hour or day (UTC)")),
                ("minimum", models.FloatField()),
                ("maximum", models.FloatField()),
                ("average", models.FloatField()),
                ("samples", models.PositiveIntegerField(help_text="good samples with a value in the bucket")),
                ("last", models.FloatField(help_text="value of the latest good sample")),
                ("last_time", models.DateTimeField(help_text="time of the latest good sample")),
                (
                    "point",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="points.point",
                    ),
                ),
            ],
            options={
                "db_table": "trends_daily",
                "indexes": [models.Index(fields=["bucket"], name="trends_daily_bucket")],
                "constraints": [models.UniqueConstraint(fields=("origin", "origin_seq"), name="trends_daily_stamp")],
            },
        ),
        # The two large tables: their shape for Django's state here, their tables made by create_partitioned
        # (PostgreSQL: partitioned by time, a BRIN index on time; elsewhere: plain tables from the same state).
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="HourlyRollup",
                    fields=[
                        (
                            "origin",
                            models.CharField(
                                help_text="node that wrote this row (or its latest change)", max_length=64
                            ),
                        ),
                        ("epoch", models.BigIntegerField(default=0, help_text="fencing epoch when it was written")),
                        (
                            "origin_seq",
                            models.BigIntegerField(default=0, help_text="position in its origin's history stream"),
                        ),
                        (
                            "pk",
                            models.CompositePrimaryKey(
                                "point", "bucket", blank=True, editable=False, primary_key=True, serialize=False
                            ),
                        ),
                        ("bucket", models.DateTimeField(help_text="start of the hour or day (UTC)")),
                        ("minimum", models.FloatField()),
                        ("maximum", models.FloatField()),
                        ("average", models.FloatField()),
                        ("samples", models.PositiveIntegerField(help_text="good samples with a value in the bucket")),
                        ("last", models.FloatField(help_text="value of the latest good sample")),
                        ("last_time", models.DateTimeField(help_text="time of the latest good sample")),
                        (
                            "point",
                            models.ForeignKey(
                                db_constraint=False,
                                db_index=False,
                                on_delete=django.db.models.deletion.DO_NOTHING,
                                related_name="+",
                                to="points.point",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "trends_hourly",
                        "indexes": [
                            models.Index(fields=["origin", "origin_seq"], name="trends_hourly_stamp"),
                            models.Index(fields=["bucket"], name="trends_hourly_bucket"),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="Sample",
                    fields=[
                        (
                            "origin",
                            models.CharField(
                                help_text="node that wrote this row (or its latest change)", max_length=64
                            ),
                        ),
                        ("epoch", models.BigIntegerField(default=0, help_text="fencing epoch when it was written")),
                        (
                            "origin_seq",
                            models.BigIntegerField(default=0, help_text="position in its origin's history stream"),
                        ),
                        (
                            "pk",
                            models.CompositePrimaryKey(
                                "point", "time", blank=True, editable=False, primary_key=True, serialize=False
                            ),
                        ),
                        ("time", models.DateTimeField(help_text="when the point had this value and quality (UTC)")),
                        (
                            "value",
                            models.FloatField(
                                blank=True, help_text="engineering value; empty: none to show", null=True
                            ),
                        ),
                        (
                            "quality",
                            models.PositiveSmallIntegerField(
                                choices=[
                                    (0, "good"),
                                    (1, "uncertain"),
                                    (2, "bad"),
                                    (3, "comm_failure"),
                                    (4, "stale"),
                                    (5, "out_of_service"),
                                ]
                            ),
                        ),
                        (
                            "point",
                            models.ForeignKey(
                                db_constraint=False,
                                db_index=False,
                                on_delete=django.db.models.deletion.DO_NOTHING,
                                related_name="+",
                                to="points.point",
                            ),
                        ),
                    ],
                    options={
                        "indexes": [
                            models.Index(fields=["origin", "origin_seq"], name="trends_sample_stamp"),
                            models.Index(fields=["time"], name="trends_sample_time"),
                        ],
                    },
                ),
            ],
        ),
        migrations.RunPython(create_partitioned, drop_partitioned),
    ]
