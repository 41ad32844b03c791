"""`mlrollouts gateway`: bad flags are one-line errors; good flags serve traffic."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from mlrollouts.cli.main import main
from mlrollouts.localstack import ports

READY_S = 120
"""A bound for the gateway's start-up on a loaded machine (imports, uvicorn), not a speed target."""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--upstream", "churn-v2"], "--upstream: 'churn-v2' must look like NAME=URL"),
        (["--upstream", "a=http://x", "--upstream", "a=http://y"], "given twice"),
        (["--upstream", "a=ftp://x"], "must start with http:// or https://"),
        (["--upstream", "a=http://x", "--champion", "b"], "--champion: 'b' is not an --upstream name"),
        (["--upstream", "a=http://x", "--split-file", "/nonexistent/split.json"], "does not exist"),
        (["--upstream", "a=http://x", "--split-file", "SPLIT", "--max-body-bytes", "0"], "--max-body-bytes"),
        (["--upstream", "a=http://x", "--split-file", "SPLIT", "--kubeconfig", "SPLIT"], "not both"),
        (["--upstream", "a=http://x", "--split-file", "SPLIT", "--path-prefix", "v1"], "--path-prefix"),
        (["--upstream", "a=http://x", "--split-file", "SPLIT", "--port", "9000", "--metrics-port", "9000"], "differ"),
        (["--upstream", "a=http://x", "--split-file", "SPLIT", "--challenger-timeout", "20"], "below --timeout"),
        (["--upstream", "a=http://x", "--split-file", "SPLIT", "--max-outcome-value", "1e300"], "at most 1e+15"),
        (["--upstream", "a=http://x", "--split-file", "SPLIT", "--signing-key-file", "SPLIT"], "at least 32"),
        (["--upstream", "a=http://x", "--split-file", "SPLIT", "--advertise-address", "10.0.0.5:9102"], "no port"),
        (["--upstream", "a=http://x", "--split-file", "SPLIT", "--advertise-address", "u@evil/x"], "bare IP"),
        (["--upstream", "a=http://x", "--split-file", "SPLIT", "--feedback-forward-timeout", "0"], "must be > 0"),
    ],
)
def test_bad_flags_name_the_flag(extra: list[str], message: str, tmp_path: Path, capsys) -> None:
    split = tmp_path / "split.json"
    split.write_text('{"a": 100}')
    argv = ["gateway", "--experiment", "churn-exp", *[str(split) if a == "SPLIT" else a for a in extra]]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("mlrollouts: error: ") and message in error
    assert len(error.strip().splitlines()) == 1


@pytest.mark.integration
def test_the_command_serves_until_terminated(models, tmp_path: Path) -> None:
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"churn-v2": 0, "churn-v3": 100}))
    entry = "import sys; from mlrollouts.cli.main import main; sys.exit(main())"
    command = [sys.executable, "-c", entry, "gateway", "--experiment", "churn-exp", "--split-file", str(split)]
    command += ["--user-header", "x-user-id", *[f"--upstream={name}={url}" for name, (_, url) in models.items()]]
    with_ports = lambda picked: [*command, "--port", str(picked[0]), "--metrics-port", str(picked[1])]  # noqa: E731
    log_path = tmp_path / "gateway.log"
    process, (port, metrics_port) = ports.start_owning(with_ports, 2, os.environ, log_path, timeout=READY_S)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + READY_S
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"gateway did not become ready in {READY_S} s"
                time.sleep(0.1)
            response = client.post("/predict", json={"x": 1}, headers={"x-user-id": "zoe"})
            assert response.headers["x-mlrollouts-variant"] == "churn-v3"
            assert client.get("/metrics").status_code == 404  # never on the public port
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            assert 'ab_test_requests_total{experiment_id="churn-exp"' in metrics
    finally:
        process.terminate()
        process.wait(timeout=10)
    output = log_path.read_text()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells how it ended
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "split applied" in output and "Application shutdown complete" in output
    assert "HTTP Request" not in output  # no log line per forwarded request
