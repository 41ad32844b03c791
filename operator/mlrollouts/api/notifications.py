"""Notifications: `spec.notifications`, receivers told of every phase change and decision.

Shaped after Flagger's alert providers (`type: slack | msteams`) with Argo Rollouts' generic `webhook`
service: each receiver names a `type` (the body's shape) and a Secret key holding its URL, since a Slack or
Teams incoming-webhook URL is itself the credential. The Secret is read only in the experiment's own
namespace, only when its name is allowed (chart value notifications.secretNames), and its URL is used only
when it lies under an allowed address (notifications.allowedAddresses). A failing receiver never holds
the experiment: notifications are sent off the reconcile path (docs/notifications.md).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from mlrollouts.api.analysis import SecretKeyRef
from mlrollouts.api.base import ApiModel, Name

NOTIFICATION_TYPES = ("webhook", "slack", "msteams")
MAX_NOTIFICATIONS = 10


class Notification(ApiModel):
    name: Name
    """Unique within spec.notifications; shown in Events and in the delivery metrics."""
    type: Literal["webhook", "slack", "msteams"] = "webhook"
    """Body shape: webhook (the documented JSON), slack (incoming webhook) or msteams (Teams workflow/connector)."""
    url_secret_ref: SecretKeyRef
    """Secret key (in the experiment's namespace) holding the receiver's URL."""


def _unique_names(receivers: list[Notification]) -> list[Notification]:
    names = [receiver.name for receiver in receivers]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"notification names must be unique, repeated: {', '.join(repeated)}")
    return receivers


Notifications = Annotated[
    list[Notification],
    Field(
        max_length=MAX_NOTIFICATIONS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    ),
    AfterValidator(_unique_names),
]
"""spec.notifications: at most 10 receivers, names unique (a map list on the API server too)."""
