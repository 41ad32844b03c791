"""`mlrollouts run`: the operator process (what the Helm chart's Deployment starts)."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import socket
import sys

import typer

from mlrollouts.cli.hook_options import hook_policy
from mlrollouts.cli.main import UsageFailure, app
from mlrollouts.controller.leases import ShardingConfig
from mlrollouts.metrics.policy import CredentialPolicy

_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


@app.command()
def run(
    namespace: list[str] = typer.Option([], "--namespace", "-n", help="Namespace to watch (repeat); all if none."),
    all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A", help="Watch every namespace."),
    standalone: bool = typer.Option(False, help="Run without kopf peering (a single replica, local runs)."),
    peering: str = typer.Option("mlrollouts", help="kopf peering name shared by the replicas (HA)."),
    metrics_port: int = typer.Option(8080, help="Port of the operator's Prometheus metrics (0 = off)."),
    liveness_port: int = typer.Option(8081, help="Port of kopf's liveness endpoint /healthz (0 = off)."),
    readiness_port: int = typer.Option(
        0, help="Port of the readiness endpoint /readyz: the API server answers a list of experiments (0 = off)."
    ),
    prometheus_allowed_address: list[str] = typer.Option(
        [],
        "--prometheus-allowed-address",
        help="Prometheus URL prefix or host:port that may receive an experiment's bearer token / CA (repeat); "
        "env MLROLLOUTS_PROMETHEUS_ALLOWED_ADDRESSES (comma-separated). None: no credentials are ever sent.",
    ),
    prometheus_default_address: str = typer.Option(
        "",
        envvar="MLROLLOUTS_PROMETHEUS_DEFAULT_ADDRESS",
        help="Prometheus address for experiments that name none.",
    ),
    prometheus_secret_name: list[str] = typer.Option(
        [],
        "--prometheus-secret-name",
        help="Secret name the operator may read, in an experiment's own namespace, for bearerTokenSecretRef / "
        "caSecretRef (repeat); env MLROLLOUTS_PROMETHEUS_SECRET_NAMES (comma-separated). None: no Secret is read.",
    ),
    webhook_allowed_address: list[str] = typer.Option(
        [],
        "--webhook-allowed-address",
        help="URL prefix or host:port that experiments' webhook gates (spec.webhooks) may call (repeat); env "
        "MLROLLOUTS_WEBHOOK_ALLOWED_ADDRESSES (comma-separated). None: an experiment with gates is Invalid.",
    ),
    notification_allowed_address: list[str] = typer.Option(
        [],
        "--notification-allowed-address",
        help="URL prefix or host:port that experiments' notification URLs may point to (repeat); env "
        "MLROLLOUTS_NOTIFICATION_ALLOWED_ADDRESSES. None: only the platform's default receivers are notified.",
    ),
    notification_secret_name: list[str] = typer.Option(
        [],
        "--notification-secret-name",
        help="Secret name the operator may read, in an experiment's own namespace, for notifications' "
        "urlSecretRef (repeat); env MLROLLOUTS_NOTIFICATION_SECRET_NAMES (comma-separated).",
    ),
    default_notification: list[str] = typer.Option(
        [],
        "--default-notification",
        help="Receiver notified for every experiment, as NAME:TYPE:ENV_VAR (TYPE webhook, slack or msteams; "
        "the URL in ENV_VAR) (repeat); env MLROLLOUTS_DEFAULT_NOTIFICATIONS (comma-separated).",
    ),
    shards: int = typer.Option(
        0,
        envvar="MLROLLOUTS_SHARDS",
        help="Active-active: split experiments into this many shards owned through Leases, every replica active "
        "(replaces kopf peering; same value on every replica). 0 = off.",
    ),
    replica_id: str = typer.Option(
        "", envvar="POD_NAME", help="This replica's Lease holder identity (default: host name and process id)."
    ),
    lease_namespace: str = typer.Option(
        "", envvar="POD_NAMESPACE", help="Namespace of the shard Leases (default: the service account's, else default)."
    ),
    lease_duration: float = typer.Option(15.0, help="Seconds before another replica may take an unrenewed shard."),
    renew_deadline: float = typer.Option(10.0, help="Seconds after its last renewal before a replica stops writing."),
    retry_period: float = typer.Option(2.0, help="Seconds between Lease renewal rounds."),
    log_format: str = typer.Option("plain", help="plain or json."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run the operator: reconcile ModelExperiments until stopped."""
    if log_format not in ("plain", "json"):
        raise UsageFailure("--log-format", f"must be plain or json, got {log_format!r}")
    ports = (("--metrics-port", metrics_port), ("--liveness-port", liveness_port), ("--readiness-port", readiness_port))
    for flag, port in ports:
        if not 0 <= port <= 65535:
            raise UsageFailure(flag, f"must be a port number 0-65535, got {port}")
    namespaces = list(namespace) or [n for n in os.environ.get("MLROLLOUTS_NAMESPACES", "").split(",") if n]
    if all_namespaces and namespaces:
        raise UsageFailure("--all-namespaces", "cannot be combined with --namespace")
    credentials = _credential_policy(prometheus_allowed_address, prometheus_default_address, prometheus_secret_name)
    hooks = hook_policy(
        webhook_allowed_address, notification_allowed_address, notification_secret_name, default_notification
    )
    sharding = _sharding(shards, replica_id, lease_namespace, (lease_duration, renew_deadline, retry_period))
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    from mlrollouts.controller.run import run_operator

    run_operator(
        namespaces,
        standalone=standalone,
        peering=peering,
        metrics_port=metrics_port or None,
        liveness_port=liveness_port or None,
        readiness_port=readiness_port or None,
        credentials=credentials,
        hooks=hooks,
        sharding=sharding,
    )


def _from_env(values: list[str], variable: str) -> list[str]:
    """The flag's values, else the comma-separated environment variable (how the chart may set them)."""
    return list(values) or [v.strip() for v in os.environ.get(variable, "").split(",") if v.strip()]


def _credential_policy(addresses: list[str], default: str, secret_names: list[str]) -> CredentialPolicy:
    allowed = _from_env(addresses, "MLROLLOUTS_PROMETHEUS_ALLOWED_ADDRESSES")
    names = _from_env(secret_names, "MLROLLOUTS_PROMETHEUS_SECRET_NAMES")
    for name in names:
        if not _SECRET_NAME.fullmatch(name):
            raise UsageFailure("--prometheus-secret-name", f"{name!r} is not a Secret name (DNS subdomain)")
    try:
        CredentialPolicy(default_address=default.strip() or None)
    except ValueError as error:
        raise UsageFailure("--prometheus-default-address", str(error)) from None
    try:
        return CredentialPolicy(tuple(allowed), default.strip() or None, frozenset(names))
    except ValueError as error:
        raise UsageFailure("--prometheus-allowed-address", str(error)) from None


_SERVICE_ACCOUNT_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _sharding(
    shards: int, replica_id: str, namespace: str, timings: tuple[float, float, float]
) -> ShardingConfig | None:
    if shards == 0:
        return None
    if not 1 <= shards <= 1024:
        raise UsageFailure("--shards", f"must be 0 (off) or 1-1024, got {shards}")
    if not namespace and _SERVICE_ACCOUNT_NAMESPACE.exists():
        namespace = _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    identity = replica_id.strip() or f"{socket.gethostname()}-{os.getpid()}"
    lease_duration, renew_deadline, retry_period = timings
    try:
        return ShardingConfig(identity, namespace or "default", shards, lease_duration, renew_deadline, retry_period)
    except ValueError as error:
        raise UsageFailure("--lease-duration/--renew-deadline/--retry-period", str(error)) from None
