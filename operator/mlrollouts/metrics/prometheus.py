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

Cost. A template of the shape `sum(f(m{label="{{variant}}"}[r]))` (or histogram_quantile over `sum by (le)`)
is asked once for all variants as `sum by (label) (...)` (templates.variant_grouping); any other shape stays
one query per variant. Queries go out concurrently on one keep-alive aiohttp session per event loop (kopf's own
HTTP client, C-accelerated): no worker threads, no per-request session set-up. Errors and counts stay per
variant and template, grouped or not.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote_plus

import aiohttp
import yarl

from mlrollouts.api import ModelExperiment
from mlrollouts.engine.types import Observations, VariantObservation
from mlrollouts.metrics.problems import http_problem, is_tls_failure, root_cause
from mlrollouts.metrics.secrets import ReadSecret, connection_for
from mlrollouts.metrics.templates import (
    TemplateError,
    query_templates,
    render,
    render_grouped,
    uses_window,
    variant_grouping,
    variant_values,
)

log = logging.getLogger(__name__)

MAX_CONCURRENT_QUERIES = 8
MAX_CONNECTIONS = 32  # per Prometheus address and credentials, shared by every experiment that uses them
QUERY_CACHE_SIZE = 16_384
"""Encoded queries kept: a few per experiment (a grouped query is one for all its variants)."""


@dataclass(frozen=True)
class _Query:
    variant: str
    kind: str  # "sample" | "guardrail"
    name: str
    promql: str | None  # None when the template could not be rendered
    render_error: str | None = None
    label: str | None = None  # set when `promql` is a `by (label)` query shared by every variant

    @property
    def description(self) -> str:
        return f"{'guardrail ' if self.kind == 'guardrail' else ''}{self.name} of {self.variant}"


@dataclass(frozen=True)
class _Result:
    value: float | None
    problem: str | None = None
    lead: str | None = None  # "empty result", "NaN": reads as "<lead> for <query> of <variant>: <problem>"
    connection_problem: bool = False  # the same for every query: reported once
    query_failed: bool = False  # Prometheus (or the way to it) failed the query; not an empty or NaN answer

    def sentence(self, query: _Query) -> str:
        if self.lead:
            return f"{self.lead} for {query.description}: {self.problem}"
        return f"{query.description}: {self.problem}"


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
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.query_errors = 0
        """Variant queries that failed (transport, HTTP or PromQL error) since creation; empty/NaN excluded.
        Counted per variant and template whether or not one grouped request answered them, so the figure
        means the same for every template shape."""

    def _http(self) -> aiohttp.ClientSession:
        """One keep-alive session per event loop (a session's connections belong to the loop that opened them)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True
            self._session = aiohttp.ClientSession(
                # Uncompressed: an answer is a few hundred bytes (one series per variant), and gzip, which
                # Prometheus applies whenever asked, cost both sides more CPU than those bytes on the wire.
                headers={**self._headers, "Accept-Encoding": "identity"},
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=context),
                # No retries (the next tick retries); waiting for a pooled connection is not the server's fault.
                timeout=aiohttp.ClientTimeout(sock_connect=self.timeout_seconds, sock_read=self.timeout_seconds),
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def observe(self, experiment: ModelExperiment, now: datetime) -> Observations:
        queries = _plan(experiment, now)
        bound = asyncio.Semaphore(self.max_concurrent_queries)
        distinct = list(dict.fromkeys(q.promql for q in queries if q.promql is not None))

        async def run(promql: str) -> _Result | list[dict]:
            async with bound:
                return await self._query(promql, now.timestamp())

        answers = dict(zip(distinct, await asyncio.gather(*(run(p) for p in distinct)), strict=True))
        results = [_result_for(query, answers) for query in queries]
        self.query_errors += sum(1 for r in results if r.query_failed)
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

    async def _query(self, promql: str, at: float) -> _Result | list[dict]:
        """One instant query: the answer's `result`, or a _Result saying why there is none."""
        # Encoded by us (yarl's own query encoding, params=, was 6 % of a tick's CPU in a profile), and once per
        # distinct query: an experiment asks the same PromQL every tick, only the time changes.
        try:
            url = yarl.URL(f"{self.address}/api/v1/query?query={_encoded(promql)}&time={at:.3f}", encoded=True)
            # A redirect could carry the token to a host the platform never allowed: refused, not followed.
            async with self._http().get(url, allow_redirects=False) as response:
                status, body = response.status, await response.read()
        except TimeoutError:
            return _failed(f"timed out after {self.timeout_seconds:g}s")
        except (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError) as error:
            return _failed(f"TLS to Prometheus at {self.address} failed: {root_cause(error)}", shared=True)
        except (aiohttp.ClientConnectionError, OSError) as error:
            if is_tls_failure(error):
                return _failed(f"TLS to Prometheus at {self.address} failed: {root_cause(error)}", shared=True)
            return _failed(f"Prometheus at {self.address} is unreachable: {root_cause(error)}", shared=True)
        except (aiohttp.ClientError, ValueError) as error:
            return _failed(f"request to Prometheus at {self.address} failed: {root_cause(error)}", shared=True)
        if 300 <= status < 400:
            problem = (
                f"Prometheus at {self.address} answered with a redirect, which is not followed: use the final address"
            )
            return _failed(problem, shared=True)
        if status != 200:
            return _failed(*http_problem(status, body.decode(errors="replace"), self.address))
        try:
            return json.loads(body)["data"]["result"]
        except (ValueError, KeyError, TypeError):  # not a Prometheus API answer (a proxy page, say)
            return _failed(f"Prometheus at {self.address} did not answer with the query API", True)


@functools.lru_cache(maxsize=QUERY_CACHE_SIZE)
def _encoded(promql: str) -> str:
    """The query as a URL query value (what urlencode does to it): a profile at 300 experiments put 4 % of the
    event loop in quoting the same strings again."""
    return quote_plus(promql)


def _failed(problem: str, shared: bool = False) -> _Result:
    return _Result(None, problem, connection_problem=shared, query_failed=True)


def _result_for(query: _Query, answers: dict[str, _Result | list[dict]]) -> _Result:
    if query.promql is None:
        return _Result(None, query.render_error)
    answer = answers[query.promql]
    if isinstance(answer, _Result):
        return answer
    if query.label is None:
        return _value_of(answer)
    mine = [s for s in answer if isinstance(s, dict) and (s.get("metric") or {}).get(query.label) == query.variant]
    return _value_of(mine)


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
    """Render every query for every variant up front; a template error costs only that query.

    A template every variant renders cleanly and whose shape allows it becomes one grouped query shared by
    the variants' entries; the entries themselves (and so errors and counts) stay one per variant.
    """
    variants = list(experiment.spec.variant_names)
    values = {variant: variant_values(experiment, variant, now) for variant in variants}
    queries = []
    for template in query_templates(experiment.spec):
        rendered: dict[str, str | TemplateError] = {}
        for variant in variants:
            try:
                rendered[variant] = render(template.text, values[variant], template.field)
            except TemplateError as error:
                rendered[variant] = error
        grouping = variant_grouping(template.text) if len(variants) > 1 else None
        grouped = None
        if grouping is not None and not any(isinstance(r, TemplateError) for r in rendered.values()):
            grouped = render_grouped(grouping, variants, values[variants[0]], template.field)
        for variant in variants:
            promql = rendered[variant]
            if isinstance(promql, TemplateError):
                queries.append(_Query(variant, template.kind, template.name, None, str(promql)))
            elif grouped is not None:
                queries.append(_Query(variant, template.kind, template.name, grouped, label=grouping.label))
            else:
                queries.append(_Query(variant, template.kind, template.name, promql))
    order = {variant: i for i, variant in enumerate(variants)}
    return sorted(queries, key=lambda q: order[q.variant])  # variant by variant, as errors have always read


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
