"""Alarm notifications: rules, the replicated outbox, email and webhook delivery, escalation."""
