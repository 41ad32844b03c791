"""Commands that need the optional `mlrollouts[local]` dependencies (emulator, demo, report) say so plainly.

The image installs only what the operator and gateway import; kmock (the emulated API server), matplotlib
(report plots), pytest-asyncio (which kmock imports) and cryptography (certificates of the real local control
plane) come with `pip install 'mlrollouts[local]'`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mlrollouts.cli.main import UsageFailure

LOCAL_ONLY = frozenset({"kmock", "matplotlib", "pytest_asyncio", "cryptography"})
INSTALL_HINT = "pip install 'mlrollouts[local]'"


def import_local(module: str, command: str) -> ModuleType:
    """Import a module of the local stack; a missing local-only dependency is a one-line usage error."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        missing = (error.name or "").split(".")[0]
        if missing not in LOCAL_ONLY:
            raise
        raise UsageFailure(
            command, f"needs the local-stack dependencies ({missing} is not installed): {INSTALL_HINT}"
        ) from None
