"""Validators shared by configuration models (names that travel in URLs, CSV files and the process image)."""

from django.core.validators import RegexValidator

POINT_NAME_VALIDATOR = RegexValidator(r"^[A-Za-z0-9_.\-]+$", "Use letters, digits, '_', '-' and '.' only (no spaces).")
