"""Alarms: classes and per-point definitions (configuration), the pure condition evaluator and state machine,
and the alarm journal (history). The engine-side evaluator, notifications and pages build on these."""
