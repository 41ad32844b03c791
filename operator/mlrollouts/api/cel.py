"""CEL rules for the CRD, kept beside the Python validators that enforce the same rule."""

from __future__ import annotations


def cel(rule: str, message: str, field_path: str | None = None) -> dict:
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry
