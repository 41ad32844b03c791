"""The whole resource and the one function that turns an API object into a checked experiment."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlrollouts import GROUP, KIND, VERSION
from mlrollouts.api.base import NAME_PATTERN
from mlrollouts.api.durations import DURATION_PATTERN
from mlrollouts.api.errors import FieldError, SpecError, SpecProblem, field_path
from mlrollouts.api.spec import ModelExperimentSpec
from mlrollouts.api.status import ModelExperimentStatus

API_VERSION = f"{GROUP}/{VERSION}"
# What a pattern means, for people: shared with the CRD-layer validator so both layers say the same.
PATTERN_HINTS = {
    NAME_PATTERN: "is not a valid name: lowercase letters, digits and '-', "
    "starting and ending with a letter or digit (at most 63 characters)",
    DURATION_PATTERN: "is not a duration: use a number and a unit (ms, s, m, h, d), e.g. 30s, 10m, 14d",
}


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = ""
    namespace: str = "default"
    generation: int | None = None
    uid: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class ModelExperiment(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ModelExperimentSpec
    status: ModelExperimentStatus = Field(default_factory=ModelExperimentStatus)


def parse_spec(spec: Any, path: str = "spec") -> ModelExperimentSpec:
    """Validate a spec mapping; SpecError lists every problem with its field path and a fix."""
    try:
        return ModelExperimentSpec.model_validate(spec)
    except ValidationError as error:
        raise SpecError(_problems(error, ModelExperimentSpec, path)) from None


def parse_experiment(obj: dict[str, Any]) -> ModelExperiment:
    """Validate a whole manifest (apiVersion, kind, metadata, spec, status)."""
    problems: list[SpecProblem] = []
    if obj.get("apiVersion") != API_VERSION:
        problems.append(SpecProblem("apiVersion", f"must be {API_VERSION}, got {obj.get('apiVersion')!r}"))
    if obj.get("kind") != KIND:
        problems.append(SpecProblem("kind", f"must be {KIND}, got {obj.get('kind')!r}"))
    spec = None
    try:
        spec = parse_spec(obj.get("spec"))
    except SpecError as error:
        problems.extend(error.problems)
    if problems:
        raise SpecError(problems)
    status = ModelExperimentStatus.model_validate(obj.get("status") or {})
    return ModelExperiment(metadata=ObjectMeta.model_validate(obj.get("metadata") or {}), spec=spec, status=status)


def _problems(error: ValidationError, root: type[BaseModel], path: str) -> list[SpecProblem]:
    problems = []
    for item in error.errors():
        parts = list(item["loc"])
        blamed = item.get("ctx", {}).get("error")
        if isinstance(blamed, FieldError):
            parts.append(blamed.field)
        loc = [str(part) for part in parts]
        where = field_path([path, *parts])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            known = _known_fields(root, loc[:-1])
            close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(sorted(known))}"
            message = f"unknown field; {hint}"
        elif item["type"] == "missing":
            message = "required field is missing"
        elif item["type"] == "literal_error":
            message = f"{message}, got {item.get('input')!r}"
        elif item["type"] == "string_pattern_mismatch" and item.get("ctx", {}).get("pattern") in PATTERN_HINTS:
            message = f"{item.get('input')!r} {PATTERN_HINTS[item['ctx']['pattern']]}"
        problems.append(SpecProblem(where, message))
    return problems


def _known_fields(root: type[BaseModel], loc: list[str]) -> list[str]:
    """Walk model fields along loc (aliases or list indexes) to list the accepted names at that level."""
    model: Any = root
    for part in loc:
        if part.isdigit():
            continue
        field = (
            next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
            if isinstance(model, type) and issubclass(model, BaseModel)
            else None
        )
        if field is None:
            return []
        model = _inner_model(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items()]
    return []


def _inner_model(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
