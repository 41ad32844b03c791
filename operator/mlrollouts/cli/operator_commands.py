"""`mlrollouts run`: the operator process (what the Helm chart's Deployment starts)."""

from __future__ import annotations

import json
import logging
import os
import sys

import typer

from mlrollouts.cli.main import UsageFailure, app


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
    liveness_port: int = typer.Option(8081, help="Port of the liveness endpoint /healthz (0 = off)."),
    log_format: str = typer.Option("plain", help="plain or json."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run the operator: reconcile ModelExperiments until stopped."""
    if log_format not in ("plain", "json"):
        raise UsageFailure("--log-format", f"must be plain or json, got {log_format!r}")
    for flag, port in (("--metrics-port", metrics_port), ("--liveness-port", liveness_port)):
        if not 0 <= port <= 65535:
            raise UsageFailure(flag, f"must be a port number 0-65535, got {port}")
    namespaces = list(namespace) or [n for n in os.environ.get("MLROLLOUTS_NAMESPACES", "").split(",") if n]
    if all_namespaces and namespaces:
        raise UsageFailure("--all-namespaces", "cannot be combined with --namespace")
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
    )
