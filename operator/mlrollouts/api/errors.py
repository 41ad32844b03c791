"""The API layer's exception: every problem carries the field path and the fix, ready for a user."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def field_path(parts: Iterable[str | int]) -> str:
    """The kubectl / CEL form of a field path: `spec.challengers[0].weight` (an index in brackets, a name after
    a dot), as the API server's own messages and `kubectl explain` write it; every message uses this one form."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


@dataclass(frozen=True)
class SpecProblem:
    path: str  # e.g. "spec.canary.steps", "spec.challengers[0].weight" (field_path)
    message: str  # what is wrong and how to fix it

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(ValueError):
    """An experiment that cannot be run as written; no traffic is moved for it."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class FieldError(ValueError):
    """Raised by a cross-field validator to blame one field (relative to the model), not the whole model."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)
