"""The provider against a real Prometheus scraping the real exporter process (no faked PromQL results).

One exporter and two Prometheus servers per module (the second one is stopped by a test), started in
parallel because each waits ~6 s for its first scrape.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from mlrollouts.api import ModelExperiment
from mlrollouts.engine.types import Observations
from mlrollouts.localstack.exporter import ExporterProcess
from mlrollouts.localstack.prometheus import PrometheusServer
from mlrollouts.metrics.prometheus import PrometheusMetrics, provider_for
from mlrollouts.metrics.templates import query_templates, render, variant_values

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

RAW_MEAN = {
    "name": "value",
    "type": "mean",
    "count": 'sum(model_outcome_value_count{variant="{{variant}}"})',
    "sum": 'sum(model_outcome_value_sum{variant="{{variant}}"})',
    "sumOfSquares": 'sum(model_outcome_value_squares_total{variant="{{variant}}"})',
}
WINDOWED = {
    "name": "retention",
    "successes": 'sum(increase(model_outcomes_total{variant="{{variant}}",outcome="success"}[{{window}}]))',
    "trials": 'sum(increase(model_outcomes_total{variant="{{variant}}"}[{{window}}]))',
}
P95 = {
    "name": "p95-latency",
    "query": "histogram_quantile(0.95, sum by (le) "
    '(rate(ab_test_latency_seconds_bucket{variant="{{variant}}"}[{{interval}}])))',
    "max": 0.5,
}
ERROR_RATE = {
    "name": "error-rate",
    "query": 'sum(rate(ab_test_errors_total{variant="{{variant}}"}[{{interval}}]))'
    ' / sum(rate(ab_test_requests_total{variant="{{variant}}"}[{{interval}}]))',
    "maxIncrease": 0.01,
}


@dataclass
class Stack:
    exporter: ExporterProcess
    prometheus: PrometheusServer
    spare: PrometheusServer  # a second server over the same exporter, for the "stopped" test


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with ExporterProcess(["churn-v2", "churn-v3", "churn-v4"], seed=7) as exporter:
        # churn-v2: steady traffic, every latency exactly 0.2 s, 10 % errors; v3 waits; v4 never moves.
        exporter.control("churn-v2", rate=200, success=0.6, latency=0.2, latency_spread=0.0, error_rate=0.1)
        exporter.control("churn-v3", rate=0)
        exporter.control("churn-v4", rate=0)
        servers = [PrometheusServer([exporter.target]), PrometheusServer([exporter.target])]
        try:
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(PrometheusServer.start, servers))
            yield Stack(exporter, servers[0], servers[1])
        finally:
            for server in servers:
                server.stop()


async def observe_until(
    provider: PrometheusMetrics, experiment: ModelExperiment, done: Callable[[Observations], bool], limit_s: float
) -> Observations:
    """Observe once a scrape until `done` holds (bounded): scrapes land every second."""
    deadline = time.monotonic() + limit_s
    while True:
        observations = await provider.observe(experiment, datetime.now(UTC))
        if done(observations) or time.monotonic() > deadline:
            return observations
        await asyncio.sleep(0.25)


async def test_raw_counters_give_exact_counts_and_increase_gives_fractional_ones(
    stack: Stack, experiment_factory: Callable[..., ModelExperiment]
) -> None:
    exporter = stack.exporter
    before = exporter.state()["churn-v3"]["totals"]
    started = datetime.now(UTC)
    await asyncio.sleep(1.5)  # a flat scrape inside the window, so increase() sees the whole movement
    exporter.control("churn-v3", rate=300, success=0.7)
    await asyncio.sleep(3.0)
    exporter.control("churn-v3", rate=0)
    after = exporter.state()["churn-v3"]["totals"]
    provider = PrometheusMetrics(stack.prometheus.address)
    raw = experiment_factory(stack.prometheus.address)
    final = {"successes": after["successes"], "trials": after["successes"] + after["failures"]}
    observed = await observe_until(provider, raw, lambda o: o.variants["churn-v3"].samples == final, 10.0)
    assert observed.cumulative_counters is True
    assert observed.errors == ()
    assert observed.variants["churn-v3"].samples == {
        "successes": after["successes"],
        "trials": after["successes"] + after["failures"],
    }
    mean = await provider.observe(experiment_factory(stack.prometheus.address, primary=RAW_MEAN), datetime.now(UTC))
    assert mean.variants["churn-v3"].samples == {
        "count": after["value_count"],
        "sum": after["value_sum"],
        "sumOfSquares": after["value_squares"],
    }

    windowed = experiment_factory(stack.prometheus.address, primary=WINDOWED, started_at=started)
    now = datetime.now(UTC)
    increase = await provider.observe(windowed, now)
    true_trials = (after["successes"] + after["failures"]) - (before["successes"] + before["failures"])
    window_s = (now - started).total_seconds()
    estimate = increase.variants["churn-v3"].samples["trials"]
    assert increase.cumulative_counters is False
    log.info("increase_vs_exact estimate=%s exact=%d window_s=%.2f", estimate, true_trials, window_s)
    assert estimate is not None and true_trials > 500
    # Extrapolation to the window edges inflates the count by at most the edge gaps (< ~1.1 scrape each).
    assert true_trials <= estimate <= true_trials * window_s / (window_s - 2.5)
    assert estimate != int(estimate), f"increase() gave an integer {estimate}"


async def test_guardrails_nan_and_empty_results(
    stack: Stack, experiment_factory: Callable[..., ModelExperiment]
) -> None:
    experiment = experiment_factory(
        stack.prometheus.address, challengers=("churn-v4", "churn-v9"), guardrails=[P95, ERROR_RATE]
    )
    observations = await PrometheusMetrics(stack.prometheus.address).observe(experiment, datetime.now(UTC))
    champion = observations.variants["churn-v2"].guardrails
    # Every latency is 0.2 s, inside bucket (0.1, 0.25]: linear interpolation gives 0.1 + 0.95 * 0.15.
    assert champion["p95-latency"] == pytest.approx(0.2425, abs=1e-9)
    assert champion["error-rate"] == pytest.approx(0.1, abs=0.05)
    assert observations.variants["churn-v4"].guardrails == {"p95-latency": None, "error-rate": None}
    assert observations.variants["churn-v4"].samples["trials"] is not None  # frozen, still exported
    assert observations.variants["churn-v9"].samples == {"successes": None, "trials": None}
    errors = "\n".join(observations.errors)
    assert "NaN for guardrail p95-latency of churn-v4" in errors
    assert "NaN for guardrail error-rate of churn-v4: not a number (a ratio with no traffic" in errors
    assert "empty result for trials of churn-v9: no series matched" in errors
    assert "empty result for guardrail p95-latency of churn-v9" in errors
    assert not observations.samples_available
    assert observations.failed_queries == 0  # no data is not a failed query


SLOW = {  # type: ratio, the SLO form: requests slower than a bucket's bound, out of the histogram's count
    "name": "slow",
    "bad": 'sum(ab_test_latency_seconds_count{variant="{{variant}}"})'
    ' - sum(ab_test_latency_seconds_bucket{variant="{{variant}}",le="LE"})',
    "total": 'sum(ab_test_latency_seconds_count{variant="{{variant}}"})',
    "maxRatio": 1.5,
}
ERRORS = {
    "name": "errors",
    "type": "ratio",
    "bad": 'sum(ab_test_errors_total{variant="{{variant}}"})',
    "total": 'sum(ab_test_requests_total{variant="{{variant}}"})',
    "max": 0.2,
}


async def test_ratio_guardrails_read_both_counts_from_counters_and_buckets(
    stack: Stack, experiment_factory: Callable[..., ModelExperiment]
) -> None:
    """Every churn-v2 latency is 0.2 s: all are slower than 0.1 s, none slower than 0.25 s."""
    slower_than = [
        {**SLOW, "name": f"slower-than-{name}", "bad": SLOW["bad"].replace("LE", le)}
        for name, le in (("100ms", "0.1"), ("250ms", "0.25"))
    ]
    experiment = experiment_factory(stack.prometheus.address, guardrails=[*slower_than, ERRORS])
    observations = await PrometheusMetrics(stack.prometheus.address).observe(experiment, datetime.now(UTC))
    champion = observations.variants["churn-v2"].guardrails
    assert observations.errors == ()
    assert set(champion) == {
        f"{g}.{part}" for g in ("slower-than-100ms", "slower-than-250ms", "errors") for part in ("bad", "total")
    }
    # bad and total are two queries: a scrape landing between them may move one by a scrape's worth.
    slow_bad, slow_total = champion["slower-than-100ms.bad"], champion["slower-than-100ms.total"]
    assert slow_bad is not None and slow_total is not None and slow_total > 1000
    assert slow_bad / slow_total == pytest.approx(1.0, abs=0.02)
    assert champion["slower-than-250ms.bad"] == 0 < champion["slower-than-250ms.total"]
    bad, total = champion["errors.bad"], champion["errors.total"]
    assert bad is not None and total is not None and bad == int(bad) and total == int(total)
    assert bad / total == pytest.approx(0.1, abs=0.05)


async def test_bad_promql_and_several_series_cost_only_their_query(
    stack: Stack, experiment_factory: Callable[..., ModelExperiment]
) -> None:
    guardrails = [
        {"name": "broken", "query": 'sum(rate(ab_test_requests_total{variant="{{variant}}"}[1m]) /', "max": 1},
        {"name": "unsummed", "query": 'model_outcomes_total{variant="{{variant}}"}', "max": 1},
        P95,
    ]
    experiment = experiment_factory(stack.prometheus.address, guardrails=guardrails)
    provider = PrometheusMetrics(stack.prometheus.address)
    observations = await provider.observe(experiment, datetime.now(UTC))
    champion = observations.variants["churn-v2"]
    assert champion.guardrails["broken"] is None and champion.guardrails["unsummed"] is None
    assert champion.guardrails["p95-latency"] == pytest.approx(0.2425, abs=1e-9)
    assert champion.samples["trials"] is not None and champion.samples["trials"] > 0
    errors = "\n".join(observations.errors)
    address = stack.prometheus.address
    assert f"guardrail broken of churn-v2: bad query (HTTP 400 bad_data from Prometheus at {address})" in errors
    assert "parse error" not in errors  # the body stays in the operator's log, never in status
    assert "2 series for guardrail unsummed of churn-v2:" in errors and "wrap it in sum(...)" in errors
    assert provider.query_errors == 2  # the broken query, once per variant; several series is not a query error
    assert observations.failed_queries == 2  # what the operator exports as mlrollouts_prometheus_query_errors_total


async def test_a_stopped_prometheus_makes_every_value_unavailable(
    stack: Stack, experiment_factory: Callable[..., ModelExperiment]
) -> None:
    address = stack.spare.address
    experiment = experiment_factory(address, guardrails=[P95])
    provider = PrometheusMetrics(address, timeout_seconds=2)
    assert (await provider.observe(experiment, datetime.now(UTC))).samples_available
    stack.spare.stop()
    started = time.monotonic()
    observations = await provider.observe(experiment, datetime.now(UTC))
    assert time.monotonic() - started < 1.0
    for variant in ("churn-v2", "churn-v3"):
        assert observations.variants[variant].samples == {"successes": None, "trials": None}
        assert observations.variants[variant].guardrails == {"p95-latency": None}
    assert observations.errors == (
        f"Prometheus at {address} is unreachable: connection refused (6 of 6 queries failed)",
    )
    assert provider.query_errors == 6
    assert observations.failed_queries == 6


async def test_the_bearer_token_is_sent_and_a_wrong_one_is_reported(
    stack: Stack, experiment_factory: Callable[..., ModelExperiment], proxy_factory: Callable[..., object]
) -> None:
    def read_secret(namespace: str, name: str, key: str) -> bytes:
        assert (namespace, name, key) == ("ml", "prom-token", "token")
        return b"s3cret\n"

    with proxy_factory(stack.prometheus.address, "s3cret") as (url, seen):
        experiment = experiment_factory(
            url, prometheus={"bearerTokenSecretRef": {"name": "prom-token", "key": "token"}}
        )
        good = await provider_for(experiment, read_secret).observe(experiment, datetime.now(UTC))
        assert good.errors == () and good.samples_available
        assert {r["authorization"] for r in seen.requests} == {"Bearer s3cret"}
        bad_provider = PrometheusMetrics(url, token="wrong")
        bad = await bad_provider.observe(experiment, datetime.now(UTC))
    assert all(v is None for obs in bad.variants.values() for v in obs.samples.values())
    assert bad.errors == (
        f"HTTP 401 from Prometheus at {url}: credentials refused, "
        "check spec.analysis.prometheus.bearerTokenSecretRef (4 of 4 queries failed)",
    )
    assert bad_provider.query_errors == 4


async def test_a_server_that_never_answers_times_out_per_query(
    experiment_factory: Callable[..., ModelExperiment],
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # connections complete in the kernel backlog; no answer ever comes
        address = f"http://127.0.0.1:{listener.getsockname()[1]}"
        provider = PrometheusMetrics(address, timeout_seconds=1.0)
        started = time.monotonic()
        observations = await provider.observe(experiment_factory(address), datetime.now(UTC))
        elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 3.5  # the four queries wait concurrently (one after another would be >= 4 s)
    assert sorted(observations.errors) == sorted(
        f"{name} of {variant}: timed out after 1s"
        for variant in ("churn-v2", "churn-v3")
        for name in ("successes", "trials")
    )
    assert provider.query_errors == 4


async def test_a_ca_from_the_secret_verifies_a_tls_prometheus(
    stack: Stack,
    experiment_factory: Callable[..., ModelExperiment],
    proxy_factory: Callable[..., object],
    self_signed: tuple[Path, Path],
) -> None:
    cert, key = self_signed
    secrets = {("ml", "prom", "token"): b"s3cret", ("ml", "prom", "ca.crt"): cert.read_bytes()}
    refs = {"bearerTokenSecretRef": {"name": "prom", "key": "token"}, "caSecretRef": {"name": "prom", "key": "ca.crt"}}
    with proxy_factory(stack.prometheus.address, "s3cret", tls=(cert, key)) as (url, _):
        experiment = experiment_factory(url, prometheus=refs)
        trusted = await provider_for(experiment, lambda *ref: secrets[ref]).observe(experiment, datetime.now(UTC))
        untrusted = await PrometheusMetrics(url, token="s3cret").observe(experiment, datetime.now(UTC))
    assert trusted.errors == () and trusted.samples_available
    assert untrusted.errors == (
        f"TLS to Prometheus at {url} failed: TLS certificate verification failed: "
        "check spec.analysis.prometheus.caSecretRef (4 of 4 queries failed)",
    )


async def test_one_request_per_template_answers_every_variant_as_per_variant_queries_would(
    stack: Stack, experiment_factory: Callable[..., ModelExperiment], proxy_factory: Callable[..., object]
) -> None:
    """Three challengers, one of them (churn-v4) never receiving traffic: 3 templates, 3 requests, same values."""
    at = datetime.now(UTC) - timedelta(seconds=2)
    guardrails = [P95, ERROR_RATE]  # P95 is grouped (histogram_quantile by le, variant); ERROR_RATE is not
    with proxy_factory(stack.prometheus.address, "s3cret") as (url, seen):
        experiment = experiment_factory(url, guardrails=guardrails, challengers=("churn-v3", "churn-v4"))
        observations = await PrometheusMetrics(url, token="s3cret").observe(experiment, at)
    grouped = [r["path"] for r in seen.requests if "by" in r["path"]]
    assert len(seen.requests) == 3 + 3  # successes, trials, p95 once each; the error-rate ratio once per variant
    assert len(grouped) == 3
    async with httpx.AsyncClient(base_url=stack.prometheus.address) as direct:
        for variant in ("churn-v2", "churn-v3", "churn-v4"):
            values = variant_values(experiment, variant, at)
            for template in query_templates(experiment.spec):
                promql = render(template.text, values, template.field)
                answer = await direct.get("/api/v1/query", params={"query": promql, "time": f"{at.timestamp():.3f}"})
                series = answer.json()["data"]["result"]
                expected = float(series[0]["value"][1]) if series else None
                observed = observations.variants[variant]
                seen_value = {**observed.samples, **observed.guardrails}[template.name]
                if expected is not None and math.isnan(expected):
                    assert seen_value is None
                else:
                    assert seen_value == expected, (variant, template.name)
    assert observations.variants["churn-v2"].samples["trials"]  # the champion has traffic: a real comparison
