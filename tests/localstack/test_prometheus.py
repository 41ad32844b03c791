"""The real Prometheus binary over a tiny exporter, queried the way the metrics provider will query it."""

from __future__ import annotations

import os
import pathlib
import threading
import time
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import prometheus_client
import pytest
from prometheus_api_client import PrometheusConnect

from mlrollouts.localstack.prometheus import PrometheusError, PrometheusServer
from proc_support import refused_port

pytestmark = pytest.mark.integration


@pytest.fixture
def exporter() -> Iterator[tuple[str, prometheus_client.Counter]]:
    """A prometheus_client exporter on a free loopback port with one counter the test steers."""
    registry = prometheus_client.CollectorRegistry()
    counter = prometheus_client.Counter("predictions", "Predictions served", ["variant"], registry=registry)
    server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    assert isinstance(server, WSGIServer) and isinstance(thread, threading.Thread)
    port = server.server_port  # bound by the server itself: no port picked then released
    try:
        yield f"127.0.0.1:{port}", counter
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_scraped_value_rules_and_clean_stop(
    exporter: tuple[str, prometheus_client.Counter], tmp_path: pathlib.Path
) -> None:
    """One lifecycle (each start costs ~5 s of Prometheus' discovery throttle): query, rules, stop."""
    target, counter = exporter
    counter.labels(variant="challenger").inc(42)
    rules = tmp_path / "rules.yml"
    rules.write_text("groups:\n- name: g\n  rules:\n  - record: answer\n    expr: vector(42)\n", encoding="utf-8")
    with PrometheusServer([target], job_name="models", rule_files=[rules]) as prometheus:
        assert prometheus.address == f"http://127.0.0.1:{prometheus.port}"
        assert prometheus.process is not None
        pid = prometheus.process.pid
        client = PrometheusConnect(url=prometheus.address, disable_ssl=True)
        # The first scrape has landed when start() returns: no waiting needed.
        result = client.custom_query('predictions_total{job="models", variant="challenger"}')
        assert [float(series["value"][1]) for series in result] == [42.0]
        recorded: list[float] = []
        for _ in range(50):  # bounded: rules are evaluated every second
            recorded = [float(series["value"][1]) for series in client.custom_query("answer")]
            if recorded:
                break
            time.sleep(0.2)
        assert recorded == [42.0]
    assert prometheus.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_binary_says_how_to_install() -> None:
    with pytest.raises(PrometheusError, match="apt-get install prometheus"):
        PrometheusServer(["127.0.0.1:1"], binary="/nonexistent/prometheus").start()


def test_unreachable_target_times_out_with_a_clear_error() -> None:
    target = f"127.0.0.1:{refused_port()}"  # nothing listens there
    with pytest.raises(PrometheusError, match="did not scrape every target"):
        PrometheusServer([target], startup_timeout_s=2).start()
