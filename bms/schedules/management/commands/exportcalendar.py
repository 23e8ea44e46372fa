"""``python manage.py exportcalendar NAME [-o FILE] [--holiday-years 2026-2028]``: a calendar as iCalendar."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bms.schedules.ical import export_calendar
from bms.schedules.models import Calendar


def _years(text: str) -> range:
    first, _, last = text.partition("-")
    try:
        start, end = int(first), int(last or first)
    except ValueError:
        raise CommandError(f"--holiday-years takes a year or a range such as 2026-2028, not {text!r}") from None
    if not 1900 <= start <= end <= start + 50:
        raise CommandError(f"--holiday-years {text}: give at most 50 years from 1900 on, the first one first")
    return range(start, end + 1)


class Command(BaseCommand):
    help = "Export a schedule calendar as iCalendar (RFC 5545) all-day events (docs/schedules.md)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the calendar's name")
        parser.add_argument("-o", "--output", default="", help="file to write (default: standard output)")
        parser.add_argument(
            "--holiday-years",
            default="",
            help="also list the public holidays of these years as dated events (e.g. 2026 or 2026-2028)",
        )

    def handle(self, *args, name: str, output: str, holiday_years: str, **options) -> None:
        calendar = Calendar.objects.filter(name=name).first()
        if calendar is None:
            known = ", ".join(Calendar.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"there is no calendar named {name!r} (calendars: {known})")
        years = _years(holiday_years) if holiday_years else range(0)
        text = export_calendar(calendar, holiday_years=years)
        if output:
            Path(output).write_text(text, encoding="utf-8")
            self.stdout.write(self.style.SUCCESS(f"calendar {name} written to {output}"))
        else:
            self.stdout.write(text, ending="")
