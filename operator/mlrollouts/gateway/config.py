"""Gateway settings, checked once so the app itself can trust them."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
HOST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
MIB = 1024 * 1024
MAX_OUTCOME_LIMIT = 1e15  # its square, summed a billion times, is still a finite float


class GatewayConfigError(ValueError):
    """A setting that cannot work; `setting` names it (as the CLI flag), the message says how to fix it."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


def valid_advertise_host(value: str) -> bool:
    """An IP address or a DNS name: nothing that could smuggle a port, a path or credentials into a URL."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return bool(HOST_NAME.fullmatch(value))
    return True


@dataclass(frozen=True)
class GatewayConfig:
    experiment: str
    upstreams: dict[str, str]  # variant name -> base URL, in order; the first is the default champion
    champion: str | None = None
    split_file: Path | None = None  # neither file nor kubeconfig: the pod's service account
    kubeconfig: Path | None = None
    namespace: str = "default"
    host: str = "127.0.0.1"
    port: int = 8080
    metrics_port: int = 9102  # /metrics only here, never on the public port
    user_header: str | None = "x-user-id"
    user_field: str | None = "user_id"
    override_header: str = "x-mlrollouts-variant"
    allow_override_header: bool = False  # QA only: forced requests are counted apart (forced_* series)
    path_prefix: str | None = None
    timeout_seconds: float = 10.0  # the whole request, a challenger's fallback to the champion included
    challenger_timeout_seconds: float | None = None  # None: half of timeout_seconds when falling back
    max_body_bytes: int = MIB
    max_concurrency: int = 256
    fallback_to_champion: bool = True
    shadow_queue_size: int = 1000
    shadow_workers: int = 8
    shadow_tolerance: float = 1e-6
    feedback_capacity: int = 100_000  # request ids remembered against replayed feedback
    feedback_cache_bytes: int = 32 * MIB
    feedback_ttl_seconds: float = 3600.0  # lifetime of an assignment token
    max_outcome_value: float = 1e9
    signing_key_file: Path | None = None  # one key per line: the first signs, all verify
    advertise_address: str | None = None  # where other replicas reach this one's metrics port (the pod IP)
    feedback_forward_timeout_seconds: float = 2.0  # forwarding /feedback to the replica that issued the token
    seed: int | None = None
    split_poll_seconds: float | None = None  # None: 0.25 s for a file, 1 s for the API

    @property
    def champion_name(self) -> str:
        return self.champion or next(iter(self.upstreams))

    @property
    def challenger_budget(self) -> float:
        """Seconds a challenger gets when a failure falls back: the champion gets the rest of the timeout."""
        if not self.fallback_to_champion:
            return self.timeout_seconds
        return self.challenger_timeout_seconds or self.timeout_seconds / 2

    @property
    def challengers(self) -> tuple[str, ...]:
        return tuple(name for name in self.upstreams if name != self.champion_name)

    def validate(self) -> GatewayConfig:
        if not VARIANT_NAME.match(self.experiment):
            raise GatewayConfigError("--experiment", f"{self.experiment!r} is not a valid experiment name")
        if not self.upstreams:
            raise GatewayConfigError("--upstream", "give at least one, as NAME=URL (e.g. churn-v2=http://...)")
        for name, url in self.upstreams.items():
            if not VARIANT_NAME.match(name):
                raise GatewayConfigError("--upstream", f"{name!r} is not a valid variant name")
            if not url.startswith(("http://", "https://")):
                raise GatewayConfigError("--upstream", f"{name}={url}: the URL must start with http:// or https://")
        if self.champion is not None and self.champion not in self.upstreams:
            known = ", ".join(self.upstreams)
            raise GatewayConfigError("--champion", f"{self.champion!r} is not an --upstream name ({known})")
        if self.split_file is not None and self.kubeconfig is not None:
            raise GatewayConfigError("--split-file", "give --split-file or --kubeconfig, not both")
        if self.split_file is not None and not self.split_file.is_file():
            raise GatewayConfigError("--split-file", f"{self.split_file} does not exist")
        if self.kubeconfig is not None and not self.kubeconfig.is_file():
            raise GatewayConfigError("--kubeconfig", f"{self.kubeconfig} does not exist")
        for setting, header in (
            ("--user-header", self.user_header),
            ("--override-header", self.override_header),
        ):
            if header is not None and not HEADER_NAME.match(header):
                raise GatewayConfigError(setting, f"{header!r} is not a valid HTTP header name")
        if self.path_prefix is not None and (not self.path_prefix.startswith("/") or self.path_prefix == "/"):
            raise GatewayConfigError("--path-prefix", f"{self.path_prefix!r} must start with / and not be /")
        positive = {
            "--timeout": self.timeout_seconds,
            "--max-body-bytes": self.max_body_bytes,
            "--max-concurrency": self.max_concurrency,
            "--shadow-queue-size": self.shadow_queue_size,
            "--feedback-capacity": self.feedback_capacity,
            "--feedback-ttl": self.feedback_ttl_seconds,
            "--feedback-cache-bytes": self.feedback_cache_bytes,
            "--max-outcome-value": self.max_outcome_value,
            "--feedback-forward-timeout": self.feedback_forward_timeout_seconds,
        }
        for setting, value in positive.items():
            if value <= 0:
                raise GatewayConfigError(setting, f"must be > 0, got {value}")
        for setting, port in (("--port", self.port), ("--metrics-port", self.metrics_port)):
            if not 0 <= port <= 65535:
                raise GatewayConfigError(setting, f"must be between 0 and 65535, got {port}")
        if self.port == self.metrics_port and self.port != 0:
            raise GatewayConfigError("--metrics-port", f"must differ from --port ({self.port})")
        challenger = self.challenger_timeout_seconds
        if challenger is not None and not 0 < challenger < self.timeout_seconds:
            raise GatewayConfigError(
                "--challenger-timeout", f"must be > 0 and below --timeout ({self.timeout_seconds:g} s)"
            )
        if not self.max_outcome_value <= MAX_OUTCOME_LIMIT:
            raise GatewayConfigError("--max-outcome-value", f"must be at most {MAX_OUTCOME_LIMIT:g}")
        if self.signing_key_file is not None and not self.signing_key_file.is_file():
            raise GatewayConfigError("--signing-key-file", f"{self.signing_key_file} does not exist")
        if self.advertise_address is not None and not valid_advertise_host(self.advertise_address):
            raise GatewayConfigError(
                "--advertise-address",
                f"{self.advertise_address[:80]!r} must be a bare IP address or DNS name (no port: replicas "
                "reach each other on --metrics-port), e.g. the pod IP from the downward API",
            )
        return self
