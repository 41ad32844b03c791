"""A restarted API server: the running operator (a real kopf process) notices and picks up an experiment
created after the restart, although its watch's resourceVersion is gone (410) or the stream was cut.

The emulator answered such a watch with 200 and no events, and a new experiment went unseen for 100 s; this
runs on the real kube-apiserver + etcd only. The operator's watch requests last 300 s here (the production
default), so an experiment seen well before that was seen by a re-list or a resumed watch, not by the
watch request timing out and starting over.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Iterator

import pytest
from stack import Stack, canary_manifest

from mlrollouts.localstack import testbackend

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(testbackend.resolve() != "real", reason="restarts the real kube-apiserver + etcd"),
]
WATCH_TIMEOUT_S = 300
# Far below the watch timeout, far above a healthy pick-up (one 1 s tick plus kopf's reconnect back-off).
SEEN_WITHIN_S = 60.0


@pytest.fixture
def operator(module_stack: Stack, tmp_path: pathlib.Path) -> Iterator[Stack]:
    module_stack.operator.watch_timeout = WATCH_TIMEOUT_S
    module_stack.operator.log_path = tmp_path / "operator.log"
    module_stack.operator.start().wait_serving()
    try:
        yield module_stack
    finally:
        module_stack.operator.stop()


def _seen(stack: Stack, name: str) -> float:
    """Seconds until the operator wrote the experiment's first status."""
    began = time.monotonic()
    stack.wait_for(name, lambda s: bool(s.get("phase")), SEEN_WITHIN_S, f"the operator to see {name}")
    return time.monotonic() - began


COLLECTION = "/apis/mlrollouts.dev/v1alpha1/namespaces/default/modelexperiments"


def _list_version(stack: Stack) -> str:
    with stack.apiserver.client() as http:
        return http.get(COLLECTION).json()["metadata"]["resourceVersion"]


def _first_watch_event(stack: Stack, since: str) -> dict:
    """What a client resuming its watch from `since` is told first."""
    params = {"watch": "true", "resourceVersion": since, "timeoutSeconds": "5"}
    with stack.apiserver.client() as http, http.stream("GET", COLLECTION, params=params) as response:
        return json.loads(next(response.iter_lines()))


@pytest.mark.parametrize(
    ("name", "restart", "how"),
    [
        ("compacted", {"compact": True}, "kube-apiserver restarted, etcd compacted meanwhile (410 Gone)"),
        ("both", {"etcd": True}, "etcd and kube-apiserver restarted on the same data dir"),
    ],
)
def test_the_operator_picks_up_an_experiment_created_after_a_restart(
    operator: Stack, name: str, restart: dict[str, bool], how: str
) -> None:
    before, after = f"{name}-before", f"{name}-after"
    operator.create(canary_manifest(before, operator.prometheus.address))
    _seen(operator, before)  # the operator is watching
    version = _list_version(operator)

    operator.apiserver.restart(**restart)
    if restart.get("compact"):  # the scenario is the one meant: resuming from the old version is refused
        event = _first_watch_event(operator, version)
        assert (event["type"], event["object"].get("code")) == ("ERROR", 410), event
    operator.create(canary_manifest(after, operator.prometheus.address))
    seconds = _seen(operator, after)

    assert operator.operator.process is not None and operator.operator.process.poll() is None, "operator died"
    print(f"{how}: new experiment seen {seconds:.1f} s after the server was ready again")
