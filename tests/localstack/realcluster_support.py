"""What the tests on the real kube-apiserver share: their skip marks and a started server with its kubectl."""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from mlrollouts.localstack import binaries
from mlrollouts.localstack.kubectl import Kubectl
from mlrollouts.localstack.realcluster import RealApiServer

REAL_CLUSTER_MARKS = [
    pytest.mark.integration,
    pytest.mark.skipif(not binaries.available(), reason=binaries.unavailable_reason()),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH"),
]


@contextmanager
def real_cluster(folder: pathlib.Path, **options: Any) -> Iterator[tuple[RealApiServer, Kubectl]]:
    """The real kube-apiserver + etcd (kubeconfig in `folder`; `options` for RealApiServer) and a kubectl on it."""
    with RealApiServer(kubeconfig_path=folder / "kubeconfig", **options) as server:
        assert server.kubeconfig is not None
        yield server, Kubectl(server.kubeconfig, folder / "kubectl-cache")
