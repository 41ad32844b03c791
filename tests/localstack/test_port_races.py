"""A child's port taken between the pick and the child's own bind (another test's server on this shared machine,
an outgoing connection's ephemeral port) must not cost a start, nor let another process answer for the child:
the child counts as started only once it holds the listening socket itself, else it is started on a new port."""

from __future__ import annotations

import logging
import os
import pathlib
import socket
import sys
from collections.abc import Iterator

import pytest

from mlrollouts.demo.processes import Supervisor
from mlrollouts.localstack import binaries, ports
from mlrollouts.localstack.exporter import ExporterProcess
from mlrollouts.localstack.prometheus import PrometheusServer
from mlrollouts.localstack.realcluster import RealApiServer
from mlrollouts.localstack.replicas import spawn_operator, stop_process


@pytest.fixture
def squatted(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The first port handed out is already listened on by someone else (here: this test)."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real, handed = ports.free_port, []

    def first_one_taken() -> int:
        handed.append(taken if not handed else real())
        return handed[-1]

    monkeypatch.setattr(ports, "free_port", first_one_taken)
    try:
        yield taken
    finally:
        squatter.close()


def test_the_listener_of_a_port_is_told_apart_from_another_process() -> None:
    with socket.socket() as mine:
        mine.bind(("127.0.0.1", 0))
        mine.listen()
        port = mine.getsockname()[1]
        assert ports.owns_listener(os.getpid(), port)
        assert not ports.owns_listener(1, port)
    assert not ports.owns_listener(os.getpid(), port), "closed: nobody listens"


CHILD = """
import socket, sys, time
held = []
for port in sys.argv[1:]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", int(port)))
    listener.listen()
    held.append(listener)
time.sleep(600)
"""


def test_a_child_of_several_ports_one_taken_is_started_again_on_new_ones(tmp_path: pathlib.Path, squatted: int) -> None:
    log = tmp_path / "child.log"
    child, picked = ports.start_owning(lambda p: [sys.executable, "-c", CHILD, *map(str, p)], 2, os.environ, log)
    try:
        assert squatted not in picked and len(set(picked)) == 2
        assert all(ports.owns_listener(child.pid, port) for port in picked)
        assert "Address already in use" in log.read_text(), "the first start lost its port and said so"
    finally:
        stop_process(child)


def test_an_operator_whose_metrics_port_was_taken_starts_on_another(tmp_path: pathlib.Path, squatted: int) -> None:
    kubeconfig = tmp_path / "kubeconfig"  # nothing answers there: the operator only has to bind its port
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
    )
    child, port = spawn_operator(kubeconfig, tmp_path / "operator.log", ["--standalone"])
    try:
        assert port != squatted
        assert ports.owns_listener(child.pid, port), "the operator itself serves the port it was given"
    finally:
        stop_process(child)


def test_prometheus_whose_port_was_taken_starts_on_another(squatted: int) -> None:
    with PrometheusServer([]) as prometheus:
        assert prometheus.port != squatted and prometheus.process is not None
        assert ports.owns_listener(prometheus.process.pid, prometheus.port)


def test_an_exporter_whose_port_was_taken_starts_on_another(squatted: int) -> None:
    with ExporterProcess(["a"]) as exporter:
        assert exporter.port != squatted and exporter.process is not None
        assert ports.owns_listener(exporter.process.pid, exporter.port)


@pytest.mark.skipif(not binaries.available(), reason="needs the real control plane (make controlplane)")
def test_a_control_plane_whose_etcd_port_was_taken_starts_on_other_ports(
    squatted: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mlrollouts.localstack.realcluster")
    with RealApiServer(builtin_crds=()) as server:
        assert "lost a port" in caplog.text, "etcd was given the taken port first"
        assert str(squatted) not in server.etcd_url
        with server.client() as http:
            assert http.get("/readyz").status_code == 200


def test_a_demo_child_whose_port_was_taken_starts_on_another(tmp_path: pathlib.Path, squatted: int) -> None:
    supervisor = Supervisor(tmp_path)
    child, picked = supervisor.start_on_ports("model", lambda p: [sys.executable, "-c", CHILD, *map(str, p)], 2)
    try:
        assert squatted not in picked and supervisor.children == [child], "the lost start is not supervised"
        assert all(ports.owns_listener(child.process.pid, port) for port in picked)
        supervisor.check()  # the first start's exit is not an error of the demo
    finally:
        supervisor.stop_all()
