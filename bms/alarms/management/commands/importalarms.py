"""``python manage.py importalarms FILE.csv``: import alarm definitions, all rows or none."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bms.alarms.importer import ImportFailed, import_alarms


class Command(BaseCommand):
    help = (
        "Import alarm definitions from a CSV file (columns: docs/operator-guide.md). "
        "Nothing is imported if any row is bad."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="CSV file with a header row")
        parser.add_argument("--dry-run", action="store_true", help="check the file and report, change nothing")

    def handle(self, *args, file: str, dry_run: bool, **options) -> None:
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        try:
            result = import_alarms(text, dry_run=dry_run)
        except ImportFailed as exc:
            raise CommandError(
                f"{path}: nothing imported, {len(exc.errors)} problem(s):\n" + "\n".join(exc.errors)
            ) from exc
        created, updated = ("would create", "would update") if dry_run else ("created", "updated")
        summary = f"{path}: {created} {len(result.created)}, {updated} {len(result.updated)} alarm definition(s)"
        self.stdout.write(self.style.SUCCESS(summary))
