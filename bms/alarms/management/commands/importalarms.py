"""``python manage.py importalarms FILE.csv``: import alarm definitions, all rows or none."""

from bms.alarms.importer import ImportResult, import_alarms
from bms.points.csv_command import CsvImportCommand


class Command(CsvImportCommand):
    help = (
        "Import alarm definitions from a CSV file (columns: docs/operator-guide.md). "
        "Nothing is imported if any row is bad."
    )
    things = "alarm definition(s)"

    def import_text(self, text: str, dry_run: bool) -> ImportResult:
        return import_alarms(text, dry_run=dry_run)
