"""Without the `mlrollouts[local]` extra (as in the image) the operator, gateway and help work, and the emulator,
demo and report commands say in one line what to install, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

# The interpreter as the image has it: the local-only packages cannot be imported.
WITHOUT_LOCAL = """
import sys
for name in ("kmock", "matplotlib", "pytest_asyncio"):  # jsonpatch comes with kopf
    sys.modules[name] = None
from mlrollouts.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_LOCAL, *argv], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["demo", "--fast"], "demo"),
        (["apiserver", "--kubeconfig", "/nonexistent/kubeconfig"], "apiserver"),
        (["report", "churn", "--prometheus", "http://127.0.0.1:9"], "report"),
    ],
)
def test_local_commands_name_the_extra(argv: list[str], command: str) -> None:
    result = _cli(*argv)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"mlrollouts: error: {command}: needs the local-stack dependencies (")
    assert "pip install 'mlrollouts[local]'" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_help_lists_every_command_without_the_extra() -> None:
    result = _cli("--help")
    assert result.returncode == 0, result.stderr
    for command in ("run", "gateway", "validate", "demo", "apiserver", "report"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["run", "gateway", "validate", "plan"])
def test_operator_gateway_and_offline_tools_load_without_the_extra(command: str) -> None:
    result = _cli(command, "--help")
    assert result.returncode == 0, result.stderr


def test_the_operator_and_gateway_modules_import_without_the_extra() -> None:
    code = WITHOUT_LOCAL.split("from mlrollouts.cli.main")[0] + (
        "import mlrollouts.controller.handlers, mlrollouts.controller.run, mlrollouts.gateway.server\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
