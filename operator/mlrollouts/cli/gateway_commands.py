"""`mlrollouts gateway`: run the built-in data plane in the foreground."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from mlrollouts.cli.main import UsageFailure, app
from mlrollouts.gateway.config import GatewayConfig, GatewayConfigError
from mlrollouts.gateway.server import run_gateway
from mlrollouts.gateway.split import SplitError
from mlrollouts.gateway.split_source import in_cluster_access, load_kubeconfig
from mlrollouts.gateway.tokens import KEYS_ENV, KeyRing, SigningKeyError


def parse_upstreams(values: list[str]) -> dict[str, str]:
    upstreams: dict[str, str] = {}
    for value in values:
        name, separator, url = value.partition("=")
        if not separator or not name or not url:
            raise UsageFailure("--upstream", f"{value!r} must look like NAME=URL, e.g. churn-v2=http://127.0.0.1:9001")
        if name in upstreams:
            raise UsageFailure("--upstream", f"variant {name!r} is given twice")
        upstreams[name] = url
    return upstreams


@app.command("gateway")
def gateway_command(
    experiment: Annotated[str, typer.Option("--experiment", help="Experiment name; salts the user hash.")],
    upstream: Annotated[
        list[str],
        typer.Option("--upstream", help="NAME=URL, once per variant. The first is the champion unless --champion."),
    ],
    port: Annotated[int, typer.Option("--port", help="Public port: /predict, /feedback, health.")] = 8080,
    metrics_port: Annotated[
        int, typer.Option("--metrics-port", help="Port of /metrics (and /healthz); keep it off the internet.")
    ] = 9102,
    host: Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 inside a container.")] = "127.0.0.1",
    champion: Annotated[
        str | None, typer.Option("--champion", help="Champion variant (default: first --upstream).")
    ] = None,
    split_file: Annotated[
        Path | None,
        typer.Option("--split-file", help='JSON like {"churn-v2": 90, "churn-v3": 10}; changes apply within 1 s.'),
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig",
            help="Follow the ModelExperiment's status through this API server (default in a pod: its service account).",
        ),
    ] = None,
    namespace: Annotated[str, typer.Option("--namespace", help="Namespace of the ModelExperiment.")] = "default",
    user_header: Annotated[str, typer.Option("--user-header", help="Header carrying the user id.")] = "x-user-id",
    user_field: Annotated[str, typer.Option("--user-field", help="JSON body field with the user id.")] = "user_id",
    override_header: Annotated[
        str, typer.Option("--override-header", help="Header that forces a variant (QA).")
    ] = "x-mlrollouts-variant",
    allow_override_header: Annotated[
        bool,
        typer.Option(
            "--allow-override-header",
            help="Honour --override-header (QA). Forced requests are counted apart, as forced_* series.",
        ),
    ] = False,
    path_prefix: Annotated[
        str | None,
        typer.Option("--path-prefix", help="Also forward everything under this path, unchanged (besides /predict)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds a request may take upstream in total, fallback included.")
    ] = 10.0,
    challenger_timeout: Annotated[
        float | None,
        typer.Option(
            "--challenger-timeout", help="Seconds before a challenger falls back (default: half of --timeout)."
        ),
    ] = None,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="Larger request bodies get 413.")] = 1024
    * 1024,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", help="In-flight upstream calls at most.")] = 256,
    fallback_to_champion: Annotated[
        bool,
        typer.Option(
            "--fallback-to-champion/--no-fallback-to-champion", help="Serve the champion when a challenger fails."
        ),
    ] = True,
    shadow_queue_size: Annotated[
        int, typer.Option("--shadow-queue-size", help="Pending mirrors before dropping.")
    ] = 1000,
    shadow_tolerance: Annotated[
        float, typer.Option("--shadow-tolerance", help="Numeric predictions closer than this agree.")
    ] = 1e-6,
    feedback_capacity: Annotated[
        int, typer.Option("--feedback-capacity", help="Counted request ids remembered against replays.")
    ] = 100_000,
    feedback_cache_bytes: Annotated[
        int, typer.Option("--feedback-cache-bytes", help="Memory bound of that replay cache.")
    ] = 32 * 1024 * 1024,
    feedback_ttl: Annotated[
        float, typer.Option("--feedback-ttl", help="Seconds an assignment token stays valid for /feedback.")
    ] = 3600.0,
    max_outcome_value: Annotated[
        float, typer.Option("--max-outcome-value", help="Larger |value| in /feedback is refused (400).")
    ] = 1e9,
    signing_key_file: Annotated[
        Path | None,
        typer.Option(
            "--signing-key-file",
            help="Token signing keys, one per line (a mounted Secret): the first signs, all verify. "
            "Also read: $MLROLLOUTS_GATEWAY_SIGNING_KEYS (comma-separated).",
        ),
    ] = None,
    advertise_address: Annotated[
        str | None,
        typer.Option(
            "--advertise-address",
            help="This replica's IP (the pod IP) where other replicas reach its --metrics-port. Set it with "
            "more than one replica: feedback is then counted by the replica that issued the token, once.",
        ),
    ] = None,
    feedback_forward_timeout: Annotated[
        float,
        typer.Option(
            "--feedback-forward-timeout", help="Seconds to hand /feedback to the replica that issued its token."
        ),
    ] = 2.0,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the per-request split for anonymous requests.")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the built-in gateway: sticky per-user split, shadow mirroring, signed /feedback, /metrics apart."""
    if log_level not in ("debug", "info", "warning", "error"):
        raise UsageFailure("--log-level", f"{log_level!r} is not one of debug, info, warning, error")
    config = GatewayConfig(
        experiment=experiment,
        upstreams=parse_upstreams(upstream),
        champion=champion,
        split_file=split_file,
        kubeconfig=kubeconfig,
        namespace=namespace,
        host=host,
        port=port,
        metrics_port=metrics_port,
        user_header=user_header or None,
        user_field=user_field or None,
        override_header=override_header,
        allow_override_header=allow_override_header,
        path_prefix=path_prefix,
        timeout_seconds=timeout,
        challenger_timeout_seconds=challenger_timeout,
        max_body_bytes=max_body_bytes,
        max_concurrency=max_concurrency,
        fallback_to_champion=fallback_to_champion,
        shadow_queue_size=shadow_queue_size,
        shadow_tolerance=shadow_tolerance,
        feedback_capacity=feedback_capacity,
        feedback_cache_bytes=feedback_cache_bytes,
        feedback_ttl_seconds=feedback_ttl,
        max_outcome_value=max_outcome_value,
        signing_key_file=signing_key_file,
        advertise_address=advertise_address,
        feedback_forward_timeout_seconds=feedback_forward_timeout,
        seed=seed,
    )
    try:
        config.validate()
    except GatewayConfigError as problem:
        raise UsageFailure(problem.setting, problem.message) from problem
    try:
        if signing_key_file is not None or os.environ.get(KEYS_ENV):
            KeyRing.from_environment(signing_key_file)
    except SigningKeyError as problem:
        raise UsageFailure("--signing-key-file", str(problem)) from problem
    if split_file is None:
        try:
            load_kubeconfig(kubeconfig) if kubeconfig else in_cluster_access()
        except SplitError as problem:
            raise UsageFailure("--kubeconfig", str(problem)) from problem
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per forwarded request is too many
    run_gateway(config, log_level=log_level)
