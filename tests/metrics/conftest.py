"""Experiments for provider tests, and a bearer-token-checking proxy in front of a real Prometheus."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bearer_proxy import bearer_proxy
from mlrollouts.api import ModelExperiment, parse_experiment

RAW_PROPORTION = {
    "name": "retention",
    "type": "proportion",
    "successes": 'sum(model_outcomes_total{variant="{{variant}}",outcome="success"})',
    "trials": 'sum(model_outcomes_total{variant="{{variant}}"})',
}


def make_experiment(
    address: str = "http://127.0.0.1:9",
    *,
    primary: dict[str, Any] | None = None,
    guardrails: list[dict[str, Any]] | None = None,
    challengers: tuple[str, ...] = ("churn-v3",),
    started_at: datetime | None = None,
    interval: str = "3s",
    namespace: str = "ml",
    prometheus: dict[str, Any] | None = None,
) -> ModelExperiment:
    """A valid abTest experiment (champion churn-v2) whose analysis block the test chooses."""
    variants = [{"name": n, "service": f"svc-{n}"} for n in challengers]
    manifest = {
        "apiVersion": "mlrollouts.dev/v1alpha1",
        "kind": "ModelExperiment",
        "metadata": {"name": "churn-test", "namespace": namespace},
        "spec": {
            "strategy": "abTest",
            "champion": {"name": "churn-v2", "service": "svc-churn-v2"},
            "challengers": variants,
            "traffic": {"provider": "gateway"},
            "abTest": {},
            "analysis": {
                "interval": interval,
                "prometheus": {"address": address, **(prometheus or {})},
                "primaryMetric": primary or RAW_PROPORTION,
                "guardrails": guardrails or [],
            },
        },
        "status": {"startedAt": started_at.isoformat()} if started_at else {},
    }
    return parse_experiment(manifest)


@pytest.fixture
def experiment_factory() -> Callable[..., ModelExperiment]:
    return make_experiment


@pytest.fixture
def proxy_factory() -> Callable[[str, str], Any]:
    """`with proxy_factory(upstream, token) as (url, log): ...`"""
    return bearer_proxy


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (openssl CLI), its own CA: what a caSecretRef would hold."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key
