"""The experiment as a tick reads it: parsed (valid specs and our own status writes cached), the routing
object it claims, the manual action asked of it. Split from tick.py so each reads in one sitting."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from mlrollouts import KIND
from mlrollouts.api import (
    API_VERSION,
    ModelExperiment,
    ModelExperimentSpec,
    ModelExperimentStatus,
    SpecError,
    parse_experiment,
)
from mlrollouts.api.durations import MIN_INTERVAL_ENV
from mlrollouts.api.experiment import ObjectMeta
from mlrollouts.engine.types import ManualAction
from mlrollouts.metrics.templates import validate_templates
from mlrollouts.routing.factory import routing_target

ACTION_ANNOTATION = "mlrollouts.dev/action"
MANUAL_ACTIONS: tuple[ManualAction, ...] = ("promote", "rollback", "pause", "resume")


SPEC_CACHE_SIZE = 20_000
_parsed_specs: OrderedDict[tuple[str, str], ModelExperimentSpec] = OrderedDict()
"""Valid specs by their canonical JSON (and the interval floor they were checked against): parsing a spec and
checking its templates was a third of a tick's CPU once the queries were cheap, repeated every tick and every
watch event for a spec that changes only when its author edits it. Content-addressed, so an edit is a miss;
models are frozen, so sharing one is safe."""


_written_status: OrderedDict[tuple[str, str], ModelExperimentStatus] = OrderedDict()
"""(uid, resourceVersion) → the status model a tick wrote and that version holds: the next tick decides on the
watch's copy of that very version, so its status need not be validated again (a tenth of `load`'s CPU per tick
was re-validating what this process had just written). Any other version, an edit included, is validated."""


def remember_status(uid: str | None, version: str | None, status: ModelExperimentStatus) -> None:
    if not uid or not version:
        return
    _written_status[(uid, version)] = status
    if len(_written_status) > SPEC_CACHE_SIZE:
        _written_status.popitem(last=False)


def forget_status(uid: str | None) -> None:
    """The experiment's loop ended: its remembered status goes (the map stays bounded anyway)."""
    for key in [key for key in _written_status if key[0] == uid]:
        del _written_status[key]


def _status_model(metadata: Mapping[str, Any], status: dict[str, Any]) -> ModelExperimentStatus:
    written = _written_status.pop((metadata.get("uid") or "", metadata.get("resourceVersion") or ""), None)
    return written if written is not None else ModelExperimentStatus.model_validate(status)


def load(body: Mapping[str, Any]) -> ModelExperiment:
    """Parse the object; template variables are checked too, so a bad query is an invalid spec, not an outage."""
    raw = {k: v for k, v in body.items() if k in ("apiVersion", "kind", "metadata", "spec")}
    status = dict(body.get("status") or {})
    status.pop("kopf", None)
    raw["status"] = status
    try:
        key = (json.dumps(raw.get("spec"), sort_keys=True), os.environ.get(MIN_INTERVAL_ENV, ""))
    except (TypeError, ValueError):  # not JSON (a test's odd body): parsed, never cached
        key = None
    spec = _parsed_specs.get(key) if key else None
    if spec is not None and raw.get("apiVersion") == API_VERSION and raw.get("kind") == KIND:
        _parsed_specs.move_to_end(key)  # type: ignore[arg-type]
        metadata = body.get("metadata") or {}
        meta = ObjectMeta.model_validate(metadata)
        return ModelExperiment(metadata=meta, spec=spec, status=_status_model(metadata, status))
    experiment = parse_experiment(raw)
    validate_templates(experiment.spec)
    if key:
        _parsed_specs[key] = experiment.spec
        if len(_parsed_specs) > SPEC_CACHE_SIZE:
            _parsed_specs.popitem(last=False)
    return experiment


_claims: OrderedDict[tuple[str, str], tuple[str, str, str] | None] = OrderedDict()


def routing_claim(body: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """The routing object a (live) experiment's spec names, or None (gateway, or an invalid spec).

    The routing index calls this on every watch event, our own status writes included: it depends on the
    namespace and the spec only, so it is kept by both and costs a JSON dump per event once seen.
    """
    namespace = (body.get("metadata") or {}).get("namespace") or ""
    try:
        key = (namespace, json.dumps(body.get("spec"), sort_keys=True))
    except (TypeError, ValueError):
        key = None
    if key is not None and key in _claims:
        return _claims[key]
    try:
        target = routing_target(load(body))
    except SpecError:
        target = None
    if key is not None:
        _claims[key] = target
        if len(_claims) > SPEC_CACHE_SIZE:
            _claims.popitem(last=False)
    return target


def manual_action(body: Mapping[str, Any]) -> tuple[ManualAction | None, str | None]:
    """The requested manual action and the raw annotation value (to remove it once handled)."""
    raw = ((body.get("metadata") or {}).get("annotations") or {}).get(ACTION_ANNOTATION)
    if raw is None:
        return None, None
    value = raw.strip().lower()
    return (value if value in MANUAL_ACTIONS else None), raw  # type: ignore[return-value]
