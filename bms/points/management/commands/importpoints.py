"""``python manage.py importpoints FILE.csv``: import a point list, all rows or none."""

from bms.points.csv_command import CsvImportCommand
from bms.points.importer import ImportResult, import_points


class Command(CsvImportCommand):
    help = "Import points from a CSV file (columns: docs/operator-guide.md). Nothing is imported if any row is bad."
    things = "point(s)"

    def import_text(self, text: str, dry_run: bool) -> ImportResult:
        return import_points(text, dry_run=dry_run)
