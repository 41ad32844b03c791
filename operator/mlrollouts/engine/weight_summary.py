"""The weights as a person reads them in `kubectl get mexp`: the Weight printer column.

Printer columns are JSONPath, so a map prints raw ({"churn-v2":80,"churn-v3":20}); the operator writes this
string instead, without spaces so `kubectl get -w` lines split into columns. Only the challengers are named:
the champion has the rest, and a short column stays aligned.
"""

from __future__ import annotations

from mlrollouts.api.spec import ModelExperimentSpec
from mlrollouts.api.status import ModelExperimentStatus


def weight_summary(spec: ModelExperimentSpec, status: ModelExperimentStatus) -> str | None:
    """E.g. "churn-v3=20%", "churn-v3=30%,churn-v4=20%", "churn-v3=100%(mirror)"; None before any traffic moved."""
    if status.mirror_percent:
        return ",".join(f"{c.name}={status.mirror_percent}%(mirror)" for c in spec.challengers)
    if not status.weights:
        return None
    return ",".join(f"{c.name}={status.weights.get(c.name, 0)}%" for c in spec.challengers)
