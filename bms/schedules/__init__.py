"""Schedules: weekly programmes with exceptions and shared calendars, evaluated as BACnet does (docs/schedules.md)."""
