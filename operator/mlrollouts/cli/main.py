"""The `mlrollouts` command: one Typer app; each sub-module registers its own commands.

Usage errors are printed as one line naming the argument, with exit code 2, never a traceback:
that is what scripts and CI jobs that call us can rely on.
"""

from __future__ import annotations

import importlib
import sys

import click
import typer

try:  # typer >= 0.29 ships its own copy of click, whose exceptions are not click's
    from typer._click import exceptions as _typer_click
except ImportError:  # older typer raises click's own exceptions
    _typer_click = click.exceptions


def _both(name: str) -> tuple[type[BaseException], ...]:
    return tuple({getattr(click.exceptions, name), getattr(_typer_click, name, getattr(click.exceptions, name))})


_NO_ARGS = _both("NoArgsIsHelpError")
_USAGE = _both("UsageError")
_EXIT = _both("Exit")
_ABORT = _both("Abort")
_CLICK = _both("ClickException")

app = typer.Typer(
    name="mlrollouts",
    help="Controlled experiments between ML model versions on Kubernetes, decided with sound statistics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from mlrollouts import __version__

        click.echo(f"mlrollouts {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    """Controlled experiments between ML model versions on Kubernetes, decided with sound statistics."""
    # An explicit callback keeps `app` a group even when only one command module is imported; without it
    # typer would turn the lone command into the whole program and read its name as a stray argument.


# Modules that register commands on `app` when imported, with the commands each defines. Only the module of
# the command being run is imported (scipy alone costs seconds to import); anything else imports them all.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "mlrollouts.cli.stats_commands": ("plan", "analyze"),
    "mlrollouts.cli.simulate_command": ("simulate",),
    "mlrollouts.cli.api_commands": ("validate", "crd"),
    "mlrollouts.cli.operator_commands": ("run",),
    "mlrollouts.cli.localstack_commands": ("apiserver",),
    "mlrollouts.cli.gateway_commands": ("gateway",),
    "mlrollouts.cli.demo_commands": ("demo", "report"),
    "mlrollouts.cli.experiment_commands": ("status", "list", "promote", "rollback", "pause", "resume"),
}


class UsageFailure(Exception):
    """Raised by commands for bad input: printed as one line, exit code 2."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument


def _register_commands(argv: list[str] | None = None) -> None:
    requested = next((arg for arg in (argv or []) if not arg.startswith("-")), None)
    if requested is None and "--version" in (argv or []):
        return  # answered by the root callback: no command module (nor scipy) needed
    owners = [module for module, commands in COMMAND_MODULES.items() if requested in commands]
    for module in owners or COMMAND_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


def main(argv: list[str] | None = None, prog_name: str = "mlrollouts") -> int:
    """Console-script entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    _register_commands(argv)
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except _NO_ARGS as error:
        click.echo(error.ctx.get_help() if error.ctx else str(error))
        return 0
    except _USAGE as error:
        sub = error.ctx.command_path.removeprefix(prog_name).strip() if error.ctx else ""
        hint = f" (see '{prog_name} {sub} --help')" if sub else f" (see '{prog_name} --help')"
        click.echo(f"mlrollouts: error: {error.format_message()}{hint}", err=True)
        return 2
    except UsageFailure as error:
        click.echo(f"mlrollouts: error: {error}", err=True)
        return 2
    except _EXIT as error:
        return error.exit_code
    except _ABORT:
        click.echo("mlrollouts: aborted", err=True)
        return 130
    except _CLICK as error:
        click.echo(f"mlrollouts: error: {error.format_message()}", err=True)
        return error.exit_code
    return result if isinstance(result, int) else 0


def kubectl_plugin() -> int:
    """`kubectl-mlrollouts` on PATH makes `kubectl mlrollouts ...` (krew naming): the same commands and flags."""
    return main(prog_name="kubectl mlrollouts")


if __name__ == "__main__":
    # Run as a module, this file is `__main__`; commands register on mlrollouts.cli.main.app, so call that one.
    from mlrollouts.cli.main import main as registered_main

    sys.exit(registered_main())
