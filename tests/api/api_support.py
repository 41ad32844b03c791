"""Helpers for the API tests: the repository's examples are the known-good manifests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from mlrollouts.api import SpecError, SpecProblem, parse_experiment

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def load_example(name: str) -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load((EXAMPLES / name).read_text()))


def python_problems(manifest: dict[str, Any]) -> list[SpecProblem]:
    """The operator layer: what parse_experiment reports (empty when it accepts the manifest)."""
    try:
        parse_experiment(manifest)
    except SpecError as error:
        return error.problems
    return []
