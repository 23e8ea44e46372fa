"""``python manage.py importcalendar FILE.ics [--name NAME] [--replace] [--dry-run]``: a file as a calendar."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bms.points.importer import ImportFailed
from bms.schedules.ical import import_calendar


class Command(BaseCommand):
    help = (
        "Import an iCalendar (RFC 5545) file of all-day events as a schedule calendar (docs/schedules.md). "
        "Nothing is imported if any event cannot be taken."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="iCalendar file (.ics)")
        parser.add_argument("--name", default="", help="the calendar's name (default: the file's X-WR-CALNAME)")
        parser.add_argument("--replace", action="store_true", help="replace the entries of an existing calendar")
        parser.add_argument("--dry-run", action="store_true", help="check the file and report, change nothing")

    def handle(self, *args, file: str, name: str, replace: bool, dry_run: bool, **options) -> None:
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        try:
            result = import_calendar(text, name, replace=replace, dry_run=dry_run)
        except ImportFailed as exc:
            raise CommandError(
                f"{path}: nothing imported, {len(exc.errors)} problem(s):\n" + "\n".join(exc.errors)
            ) from exc
        verb = (
            ("would create" if result.created else "would replace")
            if dry_run
            else ("created" if result.created else "replaced")
        )
        skipped = f", {result.skipped} event(s) skipped" if result.skipped else ""
        self.stdout.write(
            self.style.SUCCESS(f"{path}: {verb} calendar {result.name}: {result.entries} entries{skipped}")
        )
