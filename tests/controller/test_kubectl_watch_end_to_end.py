"""`kubectl mlrollouts status NAME --watch` (.venv/bin on PATH, the real kubectl finding the plugin) against a
running operator: it follows the experiment and exits 1 once a rollback requested with `kubectl mlrollouts
rollback` has been applied by the operator; on a running experiment `--timeout` ends it with 124."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
from stack import Stack, canary_manifest

pytestmark = pytest.mark.integration
BIN = pathlib.Path(sys.executable).parent


def _env(stack: Stack) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": str(stack.apiserver.kubeconfig),
    }


def test_watch_follows_the_operator_and_exits_with_the_verdict(stack: Stack) -> None:
    stack.create(canary_manifest("watched", stack.prometheus.address, traffic={"provider": "gateway"}))
    try:
        stack.wait_for("watched", lambda s: s.get("phase") == "Progressing", 15, "the first step")
        env = _env(stack)
        running = subprocess.run(
            ["kubectl", "mlrollouts", "status", "watched", "--watch", "--timeout", "1s", "--interval", "0.3"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert running.returncode == 124, running.stderr
        assert "watched" in running.stdout and "churn-v3=20%" in running.stdout  # running (or holding): no verdict

        child = subprocess.Popen(
            ["kubectl", "mlrollouts", "status", "watched", "--watch", "--timeout", "60s", "--interval", "0.3"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and "churn-v3=20%" in child.stdout.readline()  # the watch has read it
            requested = subprocess.run(
                ["kubectl", "mlrollouts", "rollback", "watched"], env=env, capture_output=True, text=True, timeout=60
            )
            assert requested.returncode == 0, requested.stderr
            out, err = child.communicate(timeout=90)
        finally:
            child.kill()
        assert child.returncode == 1, err
        assert "RolledBack" in out and "churn-v3=0%" in out
    finally:
        stack.objects.delete_namespaced_custom_object(
            "mlrollouts.dev", "v1alpha1", "default", "modelexperiments", "watched"
        )
