"""The notifications app's tables: recipient groups, recipients, rules and the replicated outbox."""

import django.core.validators
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import bms.notifications.models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("alarms", "0003_journal_seq_and_permissions"),
    ]

    operations = [
        migrations.CreateModel(
            name="RecipientGroup",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=64, unique=True)),
                ("description", models.CharField(blank=True, max_length=255)),
            ],
            options={
                "ordering": ["name"],
            },
        ),
        migrations.CreateModel(
            name="Notification",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "origin",
                    models.CharField(help_text="node that wrote this row (or its latest change)", max_length=64),
                ),
                ("epoch", models.BigIntegerField(default=0, help_text="fencing epoch when it was written")),
                ("origin_seq", models.BigIntegerField(default=0, help_text="position in its origin's history stream")),
                (
                    "key",
                    models.CharField(
                        help_text="Idempotency-Key / Message-ID: same on both nodes", max_length=64, unique=True
                    ),
                ),
                (
                    "stage",
                    models.CharField(
                        choices=[("notify", "notify"), ("escalation", "escalation")], default="notify", max_length=12
                    ),
                ),
                ("rule", models.CharField(help_text="the rule's name", max_length=64)),
                ("recipient", models.CharField(help_text="the recipient's name", max_length=64)),
                ("channel", models.CharField(choices=[("email", "email"), ("webhook", "webhook")], max_length=8)),
                ("address", models.CharField(max_length=300)),
                ("alarm", models.CharField(db_index=True, help_text="the journal row's alarm", max_length=160)),
                ("alarm_seq", models.PositiveBigIntegerField(default=0, help_text="the journal row's alarm_seq")),
                ("transition", models.CharField(max_length=20)),
                ("time", models.DateTimeField(help_text="the transition's time")),
                (
                    "payload",
                    models.JSONField(
                        default=dict, help_text="what is sent: the webhook's JSON body, the email's facts"
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "pending"),
                            ("sent", "sent"),
                            ("failed", "failed"),
                            ("cancelled", "cancelled"),
                        ],
                        default="pending",
                        max_length=12,
                    ),
                ),
                ("attempts", models.PositiveIntegerField(default=0)),
                (
                    "due_at",
                    models.DateTimeField(help_text="when it fell due: the transition's time, or the escalation's"),
                ),
                (
                    "next_try",
                    models.DateTimeField(help_text="not sent before this time (the due time, then each retry's)"),
                ),
                ("last_error", models.TextField(blank=True)),
                ("sent_at", models.DateTimeField(blank=True, null=True)),
                (
                    "sent_by",
                    models.CharField(blank=True, help_text="the node that sent it (or gave it up)", max_length=64),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("lease_until", models.DateTimeField(blank=True, null=True)),
                ("lease_owner", models.CharField(blank=True, max_length=100)),
            ],
            options={
                "ordering": ["-time", "-id"],
                "abstract": False,
                "indexes": [models.Index(fields=["status", "next_try"], name="notifications_due")],
                "constraints": [
                    models.UniqueConstraint(fields=("origin", "origin_seq"), name="notifications_notification_stamp")
                ],
            },
        ),
        migrations.CreateModel(
            name="Recipient",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "name",
                    models.CharField(
                        help_text="identifies the recipient in notification keys", max_length=64, unique=True
                    ),
                ),
                (
                    "channel",
                    models.CharField(
                        choices=[("email", "email"), ("webhook", "webhook")], default="email", max_length=8
                    ),
                ),
                (
                    "address",
                    models.CharField(
                        help_text="email: the address; webhook: the http(s) URL to POST to", max_length=300
                    ),
                ),
                (
                    "secret",
                    models.CharField(
                        blank=True,
                        help_text="webhook: the HMAC-SHA256 key that signs each body (required)",
                        max_length=200,
                    ),
                ),
                (
                    "weekdays",
                    models.CharField(
                        default="mon,tue,wed,thu,fri,sat,sun",
                        help_text="on duty on: mon,tue,wed,thu,fri,sat,sun",
                        max_length=40,
                        validators=[bms.notifications.models._validate_weekdays],
                    ),
                ),
                (
                    "start_time",
                    models.TimeField(blank=True, help_text="on duty from (site time); blank: all day", null=True),
                ),
                (
                    "end_time",
                    models.TimeField(
                        blank=True, help_text="until (exclusive); at or before the start: overnight", null=True
                    ),
                ),
                ("enabled", models.BooleanField(default=True)),
                (
                    "group",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="recipients",
                        to="notifications.recipientgroup",
                    ),
                ),
            ],
            options={
                "ordering": ["group__name", "name"],
            },
        ),
        migrations.CreateModel(
            name="NotificationRule",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=64, unique=True)),
                ("enabled", models.BooleanField(default=True)),
                (
                    "max_priority",
                    models.PositiveSmallIntegerField(
                        blank=True,
                        help_text="alarms this urgent or more (priority number at most this); blank: any",
                        null=True,
                        validators=[
                            django.core.validators.MinValueValidator(1, "A priority is from 1 (most urgent) to 1000."),
                            django.core.validators.MaxValueValidator(
                                1000, "A priority is from 1 (most urgent) to 1000."
                            ),
                        ],
                    ),
                ),
                (
                    "areas",
                    models.CharField(
                        blank=True,
                        help_text="comma-separated areas or patterns (AHU-*, Floor?); blank: any",
                        max_length=255,
                    ),
                ),
                (
                    "transitions",
                    models.CharField(
                        blank=True,
                        default="raised,realarm",
                        help_text="comma-separated transitions: raised, realarm, returned, acknowledged, shelved, ...",
                        max_length=255,
                        validators=[bms.notifications.models._validate_transitions],
                    ),
                ),
                ("escalate_after_minutes", models.PositiveIntegerField(default=0, help_text="0: no escalation")),
                (
                    "alarm_classes",
                    models.ManyToManyField(
                        blank=True,
                        help_text="none: every (annunciated) class",
                        related_name="notification_rules",
                        to="alarms.alarmclass",
                    ),
                ),
                (
                    "escalation_group",
                    models.ForeignKey(
                        blank=True,
                        help_text="notified when the alarm is still unacknowledged after the minutes below",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="escalating_rules",
                        to="notifications.recipientgroup",
                    ),
                ),
                (
                    "group",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="rules",
                        to="notifications.recipientgroup",
                    ),
                ),
            ],
            options={
                "ordering": ["name"],
            },
        ),
    ]
