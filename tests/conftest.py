"""Session-wide settings for every suite.

Integration tests compress time (1 s analysis intervals, 2 s steps) the way `make demo` does, below the
API's 5 s interval floor: they lower it with MLROLLOUTS_MIN_INTERVAL, which the operator processes they
start inherit. Tests of the floor itself remove the variable (tests/api/test_api_bounds.py).

The suites that need a Kubernetes API server run on the real kube-apiserver + etcd when `make controlplane`
built them and on the emulator otherwise; MLROLLOUTS_TEST_BACKEND=real|emulated|auto decides, and the pytest
header says which (mlrollouts.localstack.testbackend).
"""

from __future__ import annotations

import os

import pytest

from mlrollouts.api.durations import MIN_INTERVAL_ENV
from mlrollouts.localstack import testbackend

os.environ.setdefault(MIN_INTERVAL_ENV, "1s")
pytest_plugins = ["mlrollouts.localstack.fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    """MLROLLOUTS_TEST_BACKEND=real without the binaries (or a typo) stops the run before any test."""
    try:
        testbackend.resolve()
    except testbackend.BackendError as error:
        raise pytest.UsageError(str(error)) from error


def pytest_report_header(config: pytest.Config) -> str:
    return testbackend.describe()
