"""One API server (real or emulated: MLROLLOUTS_TEST_BACKEND), exporter and Prometheus per module; a fresh
operator process per test. Module scope: a real server starts in seconds, and each module's tests share it."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import kubernetes
import pytest
from stack import Stack

from mlrollouts.controller import handlers, reading
from mlrollouts.localstack import testbackend

VARIANTS = ["churn-v2", "churn-v3"]


@pytest.fixture(autouse=True)
def fresh_operator_memory() -> Iterator[None]:
    """The controller's per-process memory (the status it wrote, by uid and resourceVersion; the routing claims)
    assumes one cluster per process, where uids are unique. Tests that tick in this process each build a new fake
    cluster, reusing uids ("u-1") and counting resourceVersions from 1, so one test's remembered status was taken
    for another's object (test_tick_retry_backoff failed after test_kserve_canary in make test)."""
    yield
    reading._written_status.clear()
    reading._claims.clear()
    handlers._claims_by_generation.clear()


@pytest.fixture(scope="module")
def module_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: pathlib.Path = tmp_path_factory.mktemp("stack")
    apiserver = testbackend.start(tmp / "kubeconfig")
    stack = None
    try:
        stack = Stack(apiserver, tmp, VARIANTS)
        stack.install_istio()
        yield stack
    finally:
        if stack is not None:
            stack.close()
        apiserver.stop()


@pytest.fixture
def stack(module_stack: Stack, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The module's stack with a fresh operator and models reset to equal, healthy behaviour."""
    monkeypatch.setattr(
        kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(module_stack.apiserver.kubeconfig)
    )
    for variant in VARIANTS:
        module_stack.exporter.control(variant, rate=0, success=0.75, latency=0.05, error_rate=0.0, silent=False)
    module_stack.operator.log_path = tmp_path / "operator.log"
    module_stack.operator.start().wait_serving()
    try:
        yield module_stack
    finally:
        if module_stack.follower:
            module_stack.follower.stopping.set()
            module_stack.follower.join(2)
            module_stack.follower = None
        module_stack.operator.stop()
