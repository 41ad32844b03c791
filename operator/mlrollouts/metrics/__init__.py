"""Metrics providers: Prometheus (`prometheus.provider_for`), safe query `templates`, credentials (`secrets`)."""
