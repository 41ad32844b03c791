"""What each demo scenario runs and what it must end with.

A scenario names its manifest (`examples/demo-<name>.yaml`), the model servers with their true retention
and latency, and the outcome the engine's documented rules imply. `--fast` swaps in shorter timings (for
CI) by merging `fast_spec` into the manifest's spec; the statistics and guardrails stay the same.
"""

from __future__ import annotations

import copy
import pathlib
from dataclasses import dataclass, field
from typing import Any

import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
EXAMPLES = REPO_ROOT / "examples"
FAST_INTERVAL = "1s"


@dataclass(frozen=True)
class ModelServer:
    name: str
    retention: float
    """True probability that a user served by this model is retained (the reward the traffic sends)."""
    latency: float = 0.015
    """Median latency in seconds (lognormal, sigma 0.25: p95 is about 1.5x the median)."""
    error_rate: float = 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    models: tuple[ModelServer, ...]
    expected_phase: str
    expected_reason: str | None = None
    """status.reason the run must end with, when the phase alone does not tell the story."""
    expected_winner: str | None = None
    fast_spec: dict[str, Any] = field(default_factory=dict)

    @property
    def manifest_path(self) -> pathlib.Path:
        return EXAMPLES / f"demo-{self.name}.yaml"

    def manifest(self, prometheus: str, fast: bool = False) -> dict[str, Any]:
        """The example manifest, in namespace default, reading the demo's Prometheus."""
        if not self.manifest_path.exists():
            raise FileNotFoundError(
                f"{self.manifest_path} not found: run the demo from a checkout of the mlrollouts repository"
            )
        document = yaml.safe_load(self.manifest_path.read_text(encoding="utf-8"))
        document["metadata"]["namespace"] = "default"
        document["spec"]["analysis"]["prometheus"]["address"] = prometheus
        if fast:
            document["spec"] = merge(document["spec"], self.fast_spec)
        return document


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: nested dicts merge, anything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


CHAMPION = ModelServer("churn-v2", retention=0.72)
FAST_ANALYSIS = {"analysis": {"interval": FAST_INTERVAL}}

SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "better",
            "canary: churn-v3 retains 78 % vs 72 %, same latency -> Promoted step by step",
            (CHAMPION, ModelServer("churn-v3", retention=0.78)),
            expected_phase="Promoted",
            expected_winner="churn-v3",
            fast_spec={
                **FAST_ANALYSIS,
                "canary": {"steps": [10, 50, 100], "stepDuration": "4s", "minSamplesPerStep": 40},
            },
        ),
        Scenario(
            "regression",
            "canary: churn-v3 retains better but it is 5x slower -> RolledBack by the slow-requests guardrail",
            (CHAMPION, ModelServer("churn-v3", retention=0.78, latency=0.08)),
            expected_phase="RolledBack",
            expected_reason="GuardrailFailed",
            fast_spec={**FAST_ANALYSIS, "canary": {"steps": [20, 50, 100], "stepDuration": "30s"}},
        ),
        Scenario(
            "bandit",
            "bandit: three arms (72 %, 78 %, 66 %) -> traffic shifts to churn-v3, which is Promoted",
            (CHAMPION, ModelServer("churn-v3", retention=0.78), ModelServer("churn-v4", retention=0.66)),
            expected_phase="Promoted",
            expected_winner="churn-v3",
            fast_spec={
                **FAST_ANALYSIS,
                "bandit": {
                    "updateInterval": "2s",
                    "minSamples": 200,
                    "minExploration": 0.2,
                    "minDuration": "20s",
                    "recheckWindow": "5s",
                },
            },
        ),
        Scenario(
            "shadow",
            "shadow: churn-v3 gets a mirrored copy of every request -> Paused (ShadowPassed), ready for a canary",
            (CHAMPION, ModelServer("churn-v3", retention=0.78)),
            expected_phase="Paused",
            expected_reason="ShadowPassed",
            fast_spec={**FAST_ANALYSIS, "shadow": {"duration": "8s"}},
        ),
    )
}


def load_manifest_text(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False)
