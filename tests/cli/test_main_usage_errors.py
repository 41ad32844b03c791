"""Bad command lines give one line naming the argument and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlrollouts.cli.main import main


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["plan", "--bogus"], "--bogus"),
        (["plan", "--baseline", "0.18", "--mde", "-0.1", "--alpha", "abc"], "--alpha"),
        (["nosuch"], "nosuch"),
        (["status"], "name"),
        (["run", "--log-format", "xml"], "--log-format"),
    ],
)
def test_usage_error_is_one_line_exit_2(argv: list[str], named: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlrollouts: error:") and named.lower() in err.lower()
    assert err.count("\n") == 1 and "Traceback" not in err


def test_console_script_exit_code_reaches_the_shell() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlrollouts.cli.main", "plan", "--bogus"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1


def test_no_arguments_prints_help(capsys: pytest.CaptureFixture) -> None:
    assert main([]) == 0
    assert "Commands" in capsys.readouterr().out
