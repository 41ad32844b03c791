"""Prometheus metrics provider: one Observation per variant per tick, never an exception for a bad tick.

Sample counts and exactness. `sum(increase(x[{{window}}]))` over a long window is *extrapolated* by
Prometheus to the window's edges, so it returns fractional, slightly inflated counts (e.g. 1003.7 trials
for 1000 requests); a sample-size rule or a test on counts then works on numbers no one observed. When no
sample query uses `{{window}}`, the queries are taken to return the raw cumulative counters
(`sum(model_outcomes_total{...})`): `Observations.cumulative_counters` is True, and the engine subtracts
baselines it keeps in `status.counters`, adding back the value lost at each counter reset (a process
restart), so counts are exact integers. `{{window}}` queries are still accepted for users who prefer them.

Every value is one of: a float; or None with a sentence in `Observations.errors` saying why — the query
failed (HTTP error, timeout, bad PromQL), returned no series ("empty result"), returned NaN/Inf (e.g. a
0/0 rate when a variant got no traffic), or returned several series (the query must aggregate, e.g. with
sum). Prometheus unreachable or refusing our credentials makes every value None with one error line; the
engine counts that as metrics unavailable and applies onMetricsUnavailable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from mlrollouts.api import ModelExperiment
from mlrollouts.engine.types import Observations, VariantObservation
from mlrollouts.metrics.secrets import ReadSecret, connection_for
from mlrollouts.metrics.templates import TemplateError, query_templates, render, uses_window, variant_values

log = logging.getLogger(__name__)

MAX_CONCURRENT_QUERIES = 8
# No client-side retries (the next tick retries, and retries would multiply the timeout). read=False
# re-raises a read timeout as requests' Timeout; with read=0 urllib3 reports it as a connection error.
_NO_RETRIES = Retry(total=None, connect=0, read=False, redirect=0, status=0, other=0)


@dataclass(frozen=True)
class _Query:
    variant: str
    kind: str  # "sample" | "guardrail"
    name: str
    promql: str | None  # None when the template could not be rendered
    render_error: str | None = None

    @property
    def label(self) -> str:
        return f"{'guardrail ' if self.kind == 'guardrail' else ''}{self.name} of {self.variant}"


@dataclass(frozen=True)
class _Result:
    value: float | None
    problem: str | None = None
    lead: str | None = None  # "empty result", "NaN": reads as "<lead> for <query> of <variant>: <problem>"
    connection_problem: bool = False  # the same for every query: reported once

    def sentence(self, query: _Query) -> str:
        return f"{self.lead} for {query.label}: {self.problem}" if self.lead else f"{query.label}: {self.problem}"


class PrometheusMetrics:
    """Reads one experiment's queries from one Prometheus; cheap to keep per address and credentials."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        ca_file: str | None = None,
        timeout_seconds: float = 10,
        max_concurrent_queries: int = MAX_CONCURRENT_QUERIES,
    ) -> None:
        self.address = address.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.ca_file = ca_file
        self.max_concurrent_queries = max_concurrent_queries
        session = requests.Session()
        session.verify = ca_file if ca_file else True
        # A redirect could carry the token to a host the platform never allowed: refused, not followed.
        session.max_redirects = 0
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._client = PrometheusConnect(
            self.address, headers=headers, session=session, retry=_NO_RETRIES, timeout=timeout_seconds
        )
        self._lock = threading.Lock()
        self.query_errors = 0
        """Queries that failed (transport, HTTP or PromQL error) since creation; empty/NaN results excluded."""

    async def observe(self, experiment: ModelExperiment, now: datetime) -> Observations:
        queries = _plan(experiment, now)
        bound = asyncio.Semaphore(self.max_concurrent_queries)

        async def run(query: _Query) -> _Result:
            if query.promql is None:
                return _Result(None, query.render_error)
            async with bound:
                return await asyncio.to_thread(self._query, query.promql, now.timestamp())

        results = await asyncio.gather(*(run(q) for q in queries))
        observations = _assemble(experiment, queries, results, now)
        if observations.errors:
            log.info(
                "experiment=%s/%s metrics_problems=%d first=%r",
                experiment.metadata.namespace,
                experiment.metadata.name,
                len(observations.errors),
                observations.errors[0],
            )
        return observations

    def _query(self, promql: str, at: float) -> _Result:
        """One instant query, blocking; runs in a worker thread."""
        try:
            data = self._client.custom_query(promql, params={"time": f"{at:.3f}"})
        except requests.exceptions.Timeout:
            return self._failed(f"timed out after {self.timeout_seconds:g}s")
        except requests.exceptions.SSLError as error:
            return self._failed(f"TLS to Prometheus at {self.address} failed: {_root_cause(error)}", shared=True)
        except requests.exceptions.ConnectionError as error:
            return self._failed(f"Prometheus at {self.address} is unreachable: {_root_cause(error)}", shared=True)
        except requests.exceptions.TooManyRedirects:
            problem = (
                f"Prometheus at {self.address} answered with a redirect, which is not followed: use the final address"
            )
            return self._failed(problem, shared=True)
        except requests.exceptions.RequestException as error:
            return self._failed(f"request to Prometheus at {self.address} failed: {_root_cause(error)}", shared=True)
        except PrometheusApiClientException as error:
            return self._failed(*_http_problem(str(error), self.address))
        except (ValueError, KeyError, TypeError):  # not a Prometheus API answer (a proxy page, say)
            return self._failed(f"Prometheus at {self.address} did not answer with the query API", True)
        return _value_of(data)

    def _failed(self, problem: str, shared: bool = False) -> _Result:
        with self._lock:
            self.query_errors += 1
        return _Result(None, problem, connection_problem=shared)


def provider_for(experiment: ModelExperiment, read_secret: ReadSecret, address: str | None = None) -> PrometheusMetrics:
    """The provider an experiment's spec.analysis.prometheus describes; MetricsConfigError names a bad Secret.

    `address` overrides the spec's (the platform's default address); the caller has checked the policy.
    """
    connection = connection_for(experiment, read_secret, address)
    return PrometheusMetrics(
        connection.address,
        token=connection.token,
        ca_file=connection.ca_file,
        timeout_seconds=connection.timeout_seconds,
    )


def _plan(experiment: ModelExperiment, now: datetime) -> list[_Query]:
    """Render every query for every variant up front; a template error costs only that query."""
    queries = []
    for variant in experiment.spec.variant_names:
        values = variant_values(experiment, variant, now)
        for template in query_templates(experiment.spec):
            try:
                promql = render(template.text, values, template.field)
            except TemplateError as error:
                queries.append(_Query(variant, template.kind, template.name, None, str(error)))
            else:
                queries.append(_Query(variant, template.kind, template.name, promql))
    return queries


def _assemble(
    experiment: ModelExperiment, queries: Sequence[_Query], results: Sequence[_Result], now: datetime
) -> Observations:
    samples: dict[str, dict[str, float | None]] = {v: {} for v in experiment.spec.variant_names}
    guardrails: dict[str, dict[str, float | None]] = {v: {} for v in experiment.spec.variant_names}
    errors: list[str] = []
    shared: dict[str, int] = {}
    for query, result in zip(queries, results, strict=True):
        target = samples if query.kind == "sample" else guardrails
        target[query.variant][query.name] = result.value
        if result.problem is None:
            continue
        if result.connection_problem:
            shared[result.problem] = shared.get(result.problem, 0) + 1
        else:
            errors.append(result.sentence(query))
    errors[:0] = [f"{problem} ({count} of {len(queries)} queries failed)" for problem, count in shared.items()]
    sample_templates = [t.text for t in query_templates(experiment.spec) if t.kind == "sample"]
    return Observations(
        time=now,
        variants={v: VariantObservation(samples=samples[v], guardrails=guardrails[v]) for v in samples},
        errors=tuple(errors),
        failed_queries=sum(1 for r in results if r.problem is not None and r.lead is None),
        cumulative_counters=not any(uses_window(t) for t in sample_templates),
    )


def _value_of(data: object) -> _Result:
    """Prometheus `result`: an instant vector (list of series) or a scalar ([time, "value"])."""
    if isinstance(data, list) and len(data) == 2 and not isinstance(data[0], dict):
        raw = data[1]
    elif isinstance(data, list) and not data:
        return _Result(None, "no series matched (is the variant receiving traffic and scraped?)", "empty result")
    elif isinstance(data, list) and all(isinstance(s, dict) for s in data):
        if len(data) > 1:
            labels = ", ".join(json.dumps(s.get("metric", {}), sort_keys=True) for s in data[:3])
            problem = f"{labels}; the query must return one series: wrap it in sum(...)"
            return _Result(None, problem, f"{len(data)} series")
        raw = data[0].get("value", [None, None])[1]
    else:
        return _Result(None, f"unexpected result shape (a {type(data).__name__}, not a vector or a scalar)")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return _Result(None, "non-numeric value")
    if math.isnan(value) or math.isinf(value):
        return _Result(None, "not a number (a ratio with no traffic in the window is 0/0)", str(raw))
    return _Result(value)


def _http_problem(text: str, address: str) -> tuple[str, bool]:
    """A classified sentence for the client's "HTTP Status Code 400 (b'...')"; auth failures are shared.

    The body never reaches the sentence (it ends up in status, readable by the experiment's author): whatever
    answers at the address wrote it, and an address pointed at an internal service would otherwise read that
    service's error pages back through the operator. Prometheus's own errorType (bad_data, ...) is kept, and an
    excerpt of the body goes to the operator's log for the platform team.
    """
    status = text.split("HTTP Status Code ", 1)[-1].split(" ", 1)[0]
    status = status if status.isdigit() and len(status) == 3 else "?"
    error_type = _error_type(text)
    log.warning("prometheus=%s http_status=%s body=%r", address, status, text[:300])
    kind = f" {error_type}" if error_type else ""
    if status in ("401", "403"):
        return (
            f"HTTP {status} from Prometheus at {address}: credentials refused, "
            "check spec.analysis.prometheus.bearerTokenSecretRef",
            True,
        )
    if status in ("400", "422"):
        return (
            f"bad query (HTTP {status}{kind} from Prometheus at {address}): "
            "check its PromQL with `mlrollouts validate` or in the Prometheus UI",
            False,
        )
    return f"HTTP {status}{kind} from Prometheus at {address}", False


_ERROR_TYPES = ("bad_data", "timeout", "canceled", "execution", "internal", "unavailable", "not_found")


def _error_type(text: str) -> str | None:
    """Prometheus's `errorType`, only when it is one of the API's documented values."""
    for error_type in _ERROR_TYPES:
        if f'"errorType":"{error_type}"' in text.replace(" ", ""):
            return error_type
    return None


_CAUSES = {
    "Connection refused": "connection refused",
    "Name or service not known": "name or service not known",
    "Temporary failure in name resolution": "name resolution failed",
    "No route to host": "no route to host",
    "timed out": "timed out",
    "Connection reset": "connection reset",
    "RemoteDisconnected": "connection closed without a response",
    "Connection aborted": "connection closed without a response",
}


def _root_cause(error: BaseException) -> str:
    """A short classified reason ("connection refused"), never the exception's free text (URLs, server bytes)."""
    text = str(error)
    if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(error, requests.exceptions.SSLError):
        return "TLS certificate verification failed: check spec.analysis.prometheus.caSecretRef"
    for marker, cause in _CAUSES.items():
        if marker in text:
            return cause
    log.warning("prometheus request failed: %r", text[:300])
    return type(error).__name__
