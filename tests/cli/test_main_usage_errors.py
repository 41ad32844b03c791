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
        (["run", "--prometheus-allowed-address", "ftp://x:21"], "--prometheus-allowed-address"),
        (["run", "--prometheus-allowed-address", "https://u:p@prom:9090"], "--prometheus-allowed-address"),
        (["run", "--prometheus-default-address", "prometheus"], "--prometheus-default-address"),
        (["run", "--prometheus-secret-name", "../etc"], "--prometheus-secret-name"),
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


def test_command_map_names_every_command_of_every_module() -> None:
    """main() imports only the module of the command being run, so the map must say exactly who defines what."""
    import importlib

    from mlrollouts.cli.main import COMMAND_MODULES, app

    for module in COMMAND_MODULES:
        importlib.import_module(module)
    defined = {
        (info.name or info.callback.__name__.replace("_", "-")): info.callback.__module__
        for info in app.registered_commands
    }
    mapped = {command: module for module, commands in COMMAND_MODULES.items() for command in commands}
    assert defined == mapped


def test_running_one_command_does_not_import_the_statistics(tmp_path) -> None:
    code = "import sys; from mlrollouts.cli.main import main; main(['status', '--help']);print('scipy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().endswith("False"), result.stdout + result.stderr


@pytest.mark.parametrize("command", ["run", "plan", "gateway", "apiserver", "status"])
def test_each_command_runs_when_only_its_module_is_loaded(command: str) -> None:
    """With one module imported, the app must still be a group that dispatches on the command name."""
    result = subprocess.run(
        [sys.executable, "-m", "mlrollouts", command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert f"Usage: mlrollouts {command}" in result.stdout
