"""The demo's parts without the whole stack: model server, traffic generator, scenarios, progress lines."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import httpx
import pytest
from scipy.stats import lognorm

from mlrollouts.api import parse_experiment
from mlrollouts.api.durations import parse_duration
from mlrollouts.demo.live import plain_line, traffic_line
from mlrollouts.demo.models import ModelBehaviour, build_app, score
from mlrollouts.demo.orchestrator import Snapshot, finished, matches
from mlrollouts.demo.scenarios import SCENARIOS, merge
from mlrollouts.demo.traffic import TrafficPlan, generate, parse_retention


async def test_model_server_answers_with_its_version_and_a_stable_score() -> None:
    app = build_app(ModelBehaviour("churn-v3", latency=0.0), seed=1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://model") as client:
        first = await client.post("/predict", json={"user_id": "u-1"})
        again = await client.post("/predict", json={"user_id": "u-1"})
        other = await client.post("/predict", json={"user_id": "u-2"})
        broken = await client.post("/predict", content=b"{not json")
    assert first.status_code == 200 and first.headers["x-model-version"] == "churn-v3"
    assert first.json() == again.json() == {"prediction": round(score("churn-v3", "u-1"), 6), "model": "churn-v3"}
    assert other.json()["prediction"] != first.json()["prediction"]
    assert broken.status_code == 400


async def test_model_server_latency_and_errors_follow_its_settings() -> None:
    behaviour = ModelBehaviour("slow", latency=0.02, sigma=0.25, error_rate=1.0)
    app = build_app(behaviour, seed=3)
    durations = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://model") as client:
        for _ in range(30):
            started = time.perf_counter()
            response = await client.post("/predict", json={"user_id": "u"})
            durations.append(time.perf_counter() - started)
            assert response.status_code == 500
    assert 0.015 < statistics.median(durations) < 0.04
    assert behaviour.p95_latency == pytest.approx(lognorm.ppf(0.95, s=0.25, scale=0.02), rel=1e-9)


def fake_gateway(served: dict[str, str], rewards: dict[str, list[int]]) -> httpx.MockTransport:
    """Users with an even last digit go to v3; feedback is recorded per variant by the response's token."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/predict":
            user = request.headers["x-user-id"]
            assert body["user_id"] == user
            variant = "v3" if int(user[-1]) % 2 == 0 else "v2"
            token = f"token-{len(served)}"
            served[token] = variant
            return httpx.Response(200, json={}, headers={"x-mlrollouts-variant": variant, "x-mlrollouts-token": token})
        rewards.setdefault(served[body["token"]], []).append(body["reward"])
        return httpx.Response(200, json={})

    return httpx.MockTransport(handle)


async def test_traffic_sends_feedback_for_the_variant_that_served_and_keeps_its_rate() -> None:
    served: dict[str, str] = {}
    rewards: dict[str, list[int]] = {}
    plan = TrafficPlan("http://gateway", {"v2": 0.0, "v3": 1.0}, rate=200.0, seed=5)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(1.0, stop.set)
    stats = await generate(plan, stop, transport=fake_gateway(served, rewards))
    assert 150 <= stats.sent <= 205, "about 200 requests in one second, never more"
    assert stats.answered == stats.sent == len(served) and stats.failed == 0
    assert set(rewards["v3"]) == {1} and set(rewards["v2"]) == {0}
    assert stats.served["v3"] == len(rewards["v3"]) == stats.retained["v3"]
    assert stats.retained["v2"] == 0


async def test_traffic_counts_unready_gateway_apart_from_failures() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(503, json={"error": "no traffic split loaded yet"}))
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stop.set)
    stats = await generate(TrafficPlan("http://gateway", {"v2": 0.5}, rate=50.0), stop, transport=transport)
    assert stats.unready == stats.sent > 0 and stats.failed == 0 and stats.answered == 0


def test_retention_arguments_are_checked() -> None:
    assert parse_retention(["churn-v2=0.72", "churn-v3=0.78"]) == {"churn-v2": 0.72, "churn-v3": 0.78}
    with pytest.raises(ValueError, match="NAME=RATE"):
        parse_retention(["churn-v2"])
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        parse_retention(["churn-v2=1.5"])


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("fast", [False, True])
def test_scenario_manifests_are_valid_and_name_every_model(name: str, fast: bool) -> None:
    scenario = SCENARIOS[name]
    manifest = scenario.manifest("http://127.0.0.1:9999", fast=fast)
    experiment = parse_experiment(manifest)
    assert experiment.metadata.namespace == "default"
    assert experiment.spec.analysis.prometheus.address == "http://127.0.0.1:9999"
    assert experiment.spec.traffic.provider == "gateway"
    assert sorted(experiment.spec.variant_names) == sorted(m.name for m in scenario.models)
    for query in (experiment.spec.analysis.primary_metric.successes, experiment.spec.analysis.primary_metric.trials):
        assert "{{window}}" not in query, "raw counters: the engine keeps exact baselines"
    assert parse_duration(experiment.spec.analysis.interval).total_seconds() <= 2


def test_fast_timings_are_shorter() -> None:
    normal = parse_experiment(SCENARIOS["better"].manifest("http://p:9090")).spec
    fast = parse_experiment(SCENARIOS["better"].manifest("http://p:9090", fast=True)).spec
    assert parse_duration(fast.canary.step_duration) < parse_duration(normal.canary.step_duration)
    assert len(fast.canary.steps) < len(normal.canary.steps)
    assert fast.analysis.guardrails == normal.analysis.guardrails


def test_merge_is_deep_and_leaves_the_base_alone() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": 2}
    assert merge(base, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}, "d": 2}
    assert base == {"a": {"b": 1, "c": [1]}, "d": 2}


def test_the_demo_stops_on_final_states_only() -> None:
    assert finished({"phase": "Promoted"}) and finished({"phase": "RolledBack"})
    assert finished({"phase": "Paused", "reason": "ShadowPassed"})
    assert not finished({"phase": "Paused", "reason": "MetricsUnavailable"}), "it resumes by itself"
    assert not finished({"phase": "Progressing"}) and not finished({})
    regression = SCENARIOS["regression"]
    assert matches(regression, {"phase": "RolledBack", "reason": "GuardrailFailed"})
    assert not matches(regression, {"phase": "RolledBack", "reason": "PrimaryMetricWorse"})
    assert not matches(SCENARIOS["bandit"], {"phase": "Promoted", "winner": "churn-v4"})


def test_plain_progress_line_shows_what_drives_the_decision() -> None:
    status = {
        "phase": "Progressing",
        "step": 2,
        "weights": {"churn-v2": 75, "churn-v3": 25},
        "samples": {"churn-v2": {"successes": 720.0, "trials": 1000.0}},
        "guardrails": [{"name": "p95-latency", "value": 0.0812, "healthy": False}],
        "analysis": {"pValue": 0.0312, "decision": "continue", "reason": "step 2 (25%): waiting"},
    }
    line = plain_line(Snapshot({"status": status}, 42.04))
    assert line.startswith("[  42.0s] phase=Progressing step=2 weights=churn-v2=75,churn-v3=25")
    assert "samples=churn-v2=720/1000" in line and "p=0.0312" in line
    assert "p95-latency=FAIL(0.0812)" in line and "decision=continue: step 2 (25%): waiting" in line
    assert traffic_line({"sent": 10, "failed": 1, "served": {"a": 4}, "retained": {"a": 3}}) == (
        "traffic: 10 requests, 1 failed; served a 4 (75.0% retained)"
    )


def test_live_panel_shows_phase_weights_and_how_to_watch() -> None:
    from rich.console import Console

    from mlrollouts.demo.live import ProgressDisplay

    console = Console(record=True, width=120, force_terminal=True)
    experiment = SCENARIOS["better"].manifest("http://p:9090")
    experiment["status"] = {"phase": "Progressing", "step": 1, "weights": {"churn-v2": 90, "churn-v3": 10}}
    display = ProgressDisplay(console, "canary demo", plain=False)
    console.print(display.renderable(Snapshot(experiment, 12.0, {"sent": 5}, "KUBECONFIG=/k kubectl get mexp -w")))
    text = console.export_text()
    assert "Progressing" in text and "churn-v2 90 %" in text and "churn-v3 10 %" in text
    assert "elapsed 12s" in text and "KUBECONFIG=/k kubectl get mexp -w" in text
