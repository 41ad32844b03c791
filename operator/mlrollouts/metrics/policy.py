"""Where an experiment's Prometheus credentials may go: the platform's rules, set by the operator's flags.

An experiment is written by a tenant; the operator runs with the platform's identity. Without these rules an
experiment could name any address and any Secret, and the operator would read the Secret and send it there.
So the platform (the chart's `prometheus.*` values) decides:

- `allowed_addresses`: the only Prometheus addresses that may receive a bearer token or be trusted with a
  custom CA. Each is a URL prefix (`https://thanos.monitoring:9090/prom`) or a bare `host:port` (either
  scheme). Scheme, host and port must match exactly and the path must equal the prefix's or lie under it;
  an address with user info, a query or a fragment never matches, so a URL parser disagreement cannot
  smuggle another host past the check. Experiments without Secret refs may still name any address.
- `default_address`: used when an experiment names none.
- `secret_names`: the Secret names the operator may read, only ever in the experiment's own namespace. A
  name list (not a label) because the chart turns the same list into RBAC `resourceNames`: the API server
  enforces it too, and the operator never needs to read a Secret to learn whether it may read it.

A violation is a SpecProblem (phase Invalid) naming the field and the chart value to change, raised before
any Secret is read or any request sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from mlrollouts.api import ModelExperiment
from mlrollouts.api.errors import SpecProblem

_FIELD = "spec.analysis.prometheus"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class _Prefix:
    schemes: tuple[str, ...]
    host: str
    port: int | None  # None: the scheme's default port
    path: str

    def matches(self, address: str) -> bool:
        parts = _strict_split(address)
        if parts is None or parts.scheme not in self.schemes or parts.hostname != self.host:
            return False
        if (parts.port or _DEFAULT_PORTS[parts.scheme]) != (self.port or _DEFAULT_PORTS[parts.scheme]):
            return False
        path = parts.path.rstrip("/")
        return not self.path or path == self.path or path.startswith(self.path + "/")


@dataclass(frozen=True)
class CredentialPolicy:
    """The platform's rules for Prometheus addresses and Secrets; the default allows no credentials at all."""

    allowed_addresses: tuple[str, ...] = ()
    default_address: str | None = None
    secret_names: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for entry in self.allowed_addresses:
            _prefix(entry)  # raises ValueError naming the entry
        if self.default_address and _strict_split(self.default_address) is None:
            raise ValueError(f"default Prometheus address {self.default_address!r} is not an http(s) URL")

    def address_for(self, experiment: ModelExperiment) -> str | None:
        """The experiment's own address, else the platform's default."""
        return experiment.spec.analysis.prometheus.address or self.default_address or None

    def allows_address(self, address: str) -> bool:
        return any(_prefix(entry).matches(address) for entry in self.allowed_addresses)

    def problems(self, experiment: ModelExperiment) -> list[SpecProblem]:
        """Why this experiment may not use its Prometheus settings; empty when it may."""
        settings = experiment.spec.analysis.prometheus
        address = self.address_for(experiment)
        if address is None:
            return [
                SpecProblem(
                    f"{_FIELD}.address",
                    "required: the platform set no default Prometheus address (chart value prometheus.defaultAddress)",
                )
            ]
        refs = {
            name: ref
            for name, ref in (
                ("bearerTokenSecretRef", settings.bearer_token_secret_ref),
                ("caSecretRef", settings.ca_secret_ref),
            )
            if ref is not None
        }
        if not refs:
            return []
        if not self.allows_address(address):
            allowed = ", ".join(self.allowed_addresses) or "none"
            return [
                SpecProblem(
                    f"{_FIELD}.address",
                    f"{address} may not receive credentials ({' and '.join(refs)}): the platform allows them only "
                    f"for these Prometheus addresses: {allowed}. Use one of them, remove the Secret refs, or ask "
                    "the platform team to add the address to the chart value prometheus.allowedAddresses",
                )
            ]
        allowed_names = ", ".join(sorted(self.secret_names)) or "none"
        return [
            SpecProblem(
                f"{_FIELD}.{name}",
                f'secret "{ref.name}" is not one the operator may read (allowed names: {allowed_names}): use an '
                "allowed Secret, or ask the platform team to add the name to the chart value prometheus.secretNames",
            )
            for name, ref in refs.items()
            if ref.name not in self.secret_names
        ]


def _strict_split(address: str) -> SplitResult | None:
    """The URL's parts, or None for anything a second parser might read differently."""
    if any(c in address for c in "\\\t\r\n @") or not address.isascii():
        return None
    try:
        parts = urlsplit(address)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.query or parts.fragment:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    return parts


def _prefix(entry: str) -> _Prefix:
    text = entry.strip()
    if "://" not in text:  # host:port, either scheme
        parts = _strict_split(f"http://{text}")
        if parts is None or parts.port is None or parts.path:
            raise ValueError(f"allowed Prometheus address {entry!r}: write a URL prefix or host:port")
        return _Prefix(("http", "https"), parts.hostname or "", parts.port, "")
    parts = _strict_split(text)
    if parts is None:
        raise ValueError(f"allowed Prometheus address {entry!r} is not an http(s) URL without user info or query")
    return _Prefix((parts.scheme,), parts.hostname or "", parts.port, parts.path.rstrip("/"))
