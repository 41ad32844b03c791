"""Calling a variant's upstream (upstream.py holds the pools) and the bookkeeping of each call."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from mlrollouts.gateway.headers import RawHeaders
from mlrollouts.gateway.inbound import loads
from mlrollouts.gateway.metrics import ServedSeries, prediction_bucket
from mlrollouts.gateway.shadow import numeric_score
from mlrollouts.gateway.upstream import Upstream, UpstreamError, UpstreamResponse

log = logging.getLogger(__name__)
MAX_SCORED_BODY = 64 * 1024
# The usual answer, `{"prediction": 0.42}` (or "score") and nothing else, read without a JSON parse (a tenth
# of the gateway's own CPU per prediction): the number is a JSON number, which float() reads as json.loads
# does (integers of at most 16 digits convert exactly). Any other body takes the full parse.
SIMPLE_SCORE = re.compile(
    rb'[ \t\n\r]*\{[ \t\n\r]*"(?:prediction|score)"[ \t\n\r]*:[ \t\n\r]*'
    rb"(-?(?:0|[1-9][0-9]{0,15})(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)[ \t\n\r]*\}[ \t\n\r]*"
)


@dataclass(slots=True)  # not frozen: a frozen __init__ sets each field by object.__setattr__, 4x slower
class Outcome:
    """One upstream call: a response, or the kind of failure ("connect", "timeout", "status_5xx")."""

    variant: str
    model_version: str
    response: UpstreamResponse | None
    error_kind: str | None
    error_message: str | None = None

    @property
    def failed(self) -> bool:
        return self.error_kind is not None


class Forwarder:
    def __init__(self, experiment: str, clients: Mapping[str, Upstream]) -> None:
        self.experiment = experiment
        self.clients = clients
        self.versions = ModelVersions()

    async def call(
        self,
        variant: str,
        method: str,
        path: str,
        headers: RawHeaders,
        body: bytes,
        series: ServedSeries,
        budget_seconds: float,
    ) -> Outcome:
        """One call that gives up after `budget_seconds` in total."""
        started = time.perf_counter()
        if budget_seconds <= 0:
            return self._failed(series, variant, started, "timeout", f"variant {variant} had no time left")
        try:
            response = await self.clients[variant].request(method, path, headers, body, budget_seconds)
        except TimeoutError:
            return self._failed(series, variant, started, "timeout", f"variant {variant} timed out")
        except UpstreamError as error:
            # the detail names internal hosts: it goes to the log, not to the client
            log.debug("upstream call failed: variant=%s error=%r", variant, error)
            return self._failed(series, variant, started, "connect", f"variant {variant} unreachable")
        content_type, version = response.headers_of(b"content-type", b"x-model-version")
        model_version = self.versions.label(version, variant)
        labels = (self.experiment, variant, model_version)
        requests, latency = series.served(labels)
        requests.inc()
        latency.observe(time.perf_counter() - started)
        if response.status_code >= 500:
            series.errors.labels(*labels, "status_5xx").inc()
            return Outcome(variant, model_version, response, "status_5xx", f"variant {variant} answered 5xx")
        self._count_prediction(series, labels, response.content, content_type)
        return Outcome(variant, model_version, response, None)

    def _failed(self, series: ServedSeries, variant: str, started: float, kind: str, message: str) -> Outcome:
        labels = (self.experiment, variant, variant)
        series.requests.labels(*labels).inc()
        series.latency.labels(*labels).observe(time.perf_counter() - started)
        series.errors.labels(*labels, kind).inc()
        return Outcome(variant, variant, None, kind, message)

    def _count_prediction(
        self, series: ServedSeries, labels: tuple[str, str, str], content: bytes, content_type: str
    ) -> None:
        if len(content) > MAX_SCORED_BODY or "json" not in content_type:
            return
        score = score_of(content)
        if score is not None:
            series.prediction(labels, prediction_bucket(score)).inc()


def score_of(content: bytes) -> float | None:
    """numeric_score of the JSON body, None if it has none or is no JSON; the usual shape without a parse."""
    simple = SIMPLE_SCORE.fullmatch(content)
    if simple is not None:
        return float(simple[1])
    try:
        return numeric_score(loads(content))
    except (ValueError, RecursionError):
        return None


class ModelVersions:
    """The model's x-model-version as a metric label: short, printable, and at most a few per variant.

    A label value per request would grow the metrics without bound; past MAX_VERSIONS a variant's new
    versions are reported as "other"."""

    MAX_VERSIONS = 8

    def __init__(self) -> None:
        self.seen: dict[str, set[str]] = {}

    def label(self, version: str, variant: str) -> str:
        """`version` (the x-model-version header, "" if none) as the label to report for `variant`."""
        if not (0 < len(version) <= 64 and version.isascii() and version.isprintable()):
            return variant
        seen = self.seen.setdefault(variant, set())
        if version not in seen and len(seen) >= self.MAX_VERSIONS:
            return "other"
        seen.add(version)
        return version
