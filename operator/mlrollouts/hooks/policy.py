"""Where webhook gates and notifications may go: the platform's rules, set by the operator's flags (chart values).

Same rules, same address matching as Prometheus credentials (metrics/policy.py), since the threat is the same:
an experiment is written by a tenant, the request leaves from the operator with the platform's network reach.

- Gates (spec.webhooks[].url): only under `webhooks.allowedAddresses`. Empty: no gate may be called, and an
  experiment with gates is Invalid naming the chart value (otherwise a tenant could make the operator POST
  to any address inside the cluster, or wait forever on a gate that is never called).
- Notifications (spec.notifications[].urlSecretRef): the Secret's name must be in `notifications.secretNames`
  (also the RBAC resourceNames), read only in the experiment's namespace; the URL inside must lie under
  `notifications.allowedAddresses`, checked when sending (a bad URL is a Warning Event, never a request); a
  query is allowed there (Teams Workflows URLs are signed in it), matching only what precedes it.
- Platform defaults (`notifications.defaults`): URLs from the operator's own environment, set by the platform;
  trusted as they are.

A violation is a SpecProblem (phase Invalid) naming the field and the chart value, raised before any Secret is
read or any request sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlrollouts.api import ModelExperiment
from mlrollouts.api.errors import SpecProblem
from mlrollouts.metrics.policy import CredentialPolicy


@dataclass(frozen=True)
class DefaultReceiver:
    """A receiver the platform set for every experiment (chart value notifications.defaults)."""

    name: str
    type: str
    url: str


@dataclass(frozen=True)
class HookPolicy:
    gate_addresses: tuple[str, ...] = ()
    notification_addresses: tuple[str, ...] = ()
    notification_secret_names: frozenset[str] = frozenset()
    default_receivers: tuple[DefaultReceiver, ...] = ()

    def __post_init__(self) -> None:
        # The same prefix syntax as prometheus.allowedAddresses; a bad entry fails at startup, naming it.
        CredentialPolicy(allowed_addresses=self.gate_addresses)
        CredentialPolicy(allowed_addresses=self.notification_addresses)

    def allows_gate(self, url: str) -> bool:
        return CredentialPolicy(allowed_addresses=self.gate_addresses).allows_address(url)

    def allows_notification(self, url: str) -> bool:
        """Like a Prometheus address, except that a query is allowed: Teams Workflows URLs carry their signature
        there. Only what precedes `?` is matched, and characters a second parser could read as another host
        (`@`, `\\`, whitespace, `#`) are refused anywhere in the URL."""
        if any(c in url for c in "\\\t\r\n @#") or not url.isascii():
            return False
        base = url.split("?", 1)[0]
        return CredentialPolicy(allowed_addresses=self.notification_addresses).allows_address(base)

    def problems(self, experiment: ModelExperiment) -> list[SpecProblem]:
        """Why this experiment's gates or receivers are not allowed; empty when they are."""
        spec = experiment.spec
        problems = []
        allowed = ", ".join(self.gate_addresses) or "none"
        for index, hook in enumerate(spec.webhooks or []):
            if not self.allows_gate(hook.url):
                problems.append(
                    SpecProblem(
                        f"spec.webhooks[{index}].url",
                        f"{hook.url} is not an address the operator may call (allowed: {allowed}): use one of "
                        "them, or ask the platform team to add it to the chart value webhooks.allowedAddresses",
                    )
                )
        names = ", ".join(sorted(self.notification_secret_names)) or "none"
        for index, receiver in enumerate(spec.notifications or []):
            ref = receiver.url_secret_ref
            if ref.name not in self.notification_secret_names:
                problems.append(
                    SpecProblem(
                        f"spec.notifications[{index}].urlSecretRef",
                        f'secret "{ref.name}" is not one the operator may read (allowed names: {names}): use an '
                        "allowed Secret, or ask the platform team to add the name to the chart value "
                        "notifications.secretNames",
                    )
                )
        return problems
