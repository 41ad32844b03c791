"""`mlrollouts run` flags for webhook gates and notifications, turned into the operator's HookPolicy."""

from __future__ import annotations

import os
import re

from mlrollouts.api.base import NAME_PATTERN
from mlrollouts.api.notifications import NOTIFICATION_TYPES
from mlrollouts.cli.main import UsageFailure
from mlrollouts.hooks.policy import DefaultReceiver, HookPolicy

_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _from_env(values: list[str], variable: str) -> list[str]:
    return list(values) or [v.strip() for v in os.environ.get(variable, "").split(",") if v.strip()]


def hook_policy(
    webhook_addresses: list[str], notification_addresses: list[str], secret_names: list[str], defaults: list[str]
) -> HookPolicy:
    """The policy from the flags (or their MLROLLOUTS_* variables); a bad value is a UsageFailure naming the flag."""
    gates = _from_env(webhook_addresses, "MLROLLOUTS_WEBHOOK_ALLOWED_ADDRESSES")
    receivers = _from_env(notification_addresses, "MLROLLOUTS_NOTIFICATION_ALLOWED_ADDRESSES")
    names = _from_env(secret_names, "MLROLLOUTS_NOTIFICATION_SECRET_NAMES")
    for name in names:
        if not _SECRET_NAME.fullmatch(name):
            raise UsageFailure("--notification-secret-name", f"{name!r} is not a Secret name (DNS subdomain)")
    default_receivers = tuple(_default(entry) for entry in _from_env(defaults, "MLROLLOUTS_DEFAULT_NOTIFICATIONS"))
    for flag, entries in (("--webhook-allowed-address", gates), ("--notification-allowed-address", receivers)):
        try:
            HookPolicy(gate_addresses=tuple(entries))
        except ValueError as error:
            raise UsageFailure(flag, str(error)) from None
    return HookPolicy(tuple(gates), tuple(receivers), frozenset(names), default_receivers)


def _default(entry: str) -> DefaultReceiver:
    """NAME:TYPE:ENV_VAR, the URL being the value of ENV_VAR (the chart sets it from a Secret)."""
    flag = "--default-notification"
    parts = entry.split(":")
    if len(parts) != 3:
        raise UsageFailure(flag, f"{entry!r}: write NAME:TYPE:ENV_VAR, e.g. platform:slack:SLACK_URL")
    name, kind, variable = (part.strip() for part in parts)
    if not re.fullmatch(NAME_PATTERN, name):
        raise UsageFailure(flag, f"{entry!r}: the name {name!r} must be a DNS-1123 label (lowercase, digits, -)")
    if kind not in NOTIFICATION_TYPES:
        raise UsageFailure(flag, f"{entry!r}: the type must be one of {', '.join(NOTIFICATION_TYPES)}")
    if not _ENV_NAME.fullmatch(variable):
        raise UsageFailure(flag, f"{entry!r}: {variable!r} is not an environment variable name")
    url = os.environ.get(variable, "").strip()
    if not re.fullmatch(r"https?://\S+", url):
        raise UsageFailure(flag, f"{entry!r}: environment variable {variable} must hold an http(s) URL")
    return DefaultReceiver(name, kind, url)
