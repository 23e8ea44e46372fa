"""The shared body of the CSV import commands (importpoints, importalarms): read, import all or none, report."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bms.audit.context import Actor, acting
from bms.points.importer import ImportFailed, ImportResult


class CsvImportCommand(BaseCommand):
    """Abstract: a subclass names what it imports (``things``, e.g. "point(s)") and the import function."""

    things = ""

    def import_text(self, text: str, dry_run: bool) -> ImportResult:
        raise NotImplementedError

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
            # Each object it creates or changes is an audit entry "via import", naming the file.
            with acting(Actor("import", name=f"manage.py ({path.name})")):
                result = self.import_text(text, dry_run)
        except ImportFailed as exc:
            raise CommandError(
                f"{path}: nothing imported, {len(exc.errors)} problem(s):\n" + "\n".join(exc.errors)
            ) from exc
        created, updated = ("would create", "would update") if dry_run else ("created", "updated")
        summary = f"{path}: {created} {len(result.created)}, {updated} {len(result.updated)} {self.things}"
        self.stdout.write(self.style.SUCCESS(summary))
