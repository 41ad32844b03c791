"""Calls out of the operator: webhook gates (spec.webhooks) and notifications (spec.notifications)."""
