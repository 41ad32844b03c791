"""What a receiver gets: the documented JSON body (docs/notifications.md), and its Slack and Teams renderings.

Pure: built from the experiment and its status, no I/O. The generic body is a contract with users' receivers:
add fields, never rename or remove one without a new `version`.
"""

from __future__ import annotations

from typing import Any

from mlrollouts.api import ModelExperiment
from mlrollouts.api.status import ModelExperimentStatus
from mlrollouts.engine.analysis import headline

BODY_VERSION = "v1"
NOTABLE_DECISIONS = frozenset({"advance", "promote", "rollback", "pause", "conclude"})
_COLOURS = {"Promoted": "#2EB67D", "RolledBack": "#E01E5A", "Invalid": "#E01E5A", "Paused": "#ECB22E"}


def notable(previous: ModelExperimentStatus, status: ModelExperimentStatus) -> bool:
    """A phase change, or a decision that changed where the experiment stands (step or reason).

    Holding and continuing are not news; a step advance, a pause (and its reason) and every terminal decision are.
    """
    if previous.phase != status.phase:
        return status.phase is not None
    decision = status.analysis.decision if status.analysis else None
    return decision in NOTABLE_DECISIONS and (previous.step, previous.reason) != (status.step, status.reason)


def primary_metric(experiment: ModelExperiment, status: ModelExperimentStatus) -> dict[str, Any]:
    """The primary metric's verdict on the challenger with the strongest evidence (as `mlrollouts status`)."""
    metric = experiment.spec.analysis.primary_metric
    top = headline(status.analysis.comparisons) if status.analysis else None
    return {
        "name": metric.name,
        "challenger": top.challenger if top else None,
        "verdict": top.verdict if top else None,
        "pValue": top.adjusted_p_value if top and top.adjusted_p_value is not None else (top.p_value if top else None),
        "probabilityBetter": top.probability_better if top else None,
        "relativeLift": top.relative_lift if top else None,
    }


def body(experiment: ModelExperiment, status: ModelExperimentStatus, previous_phase: str | None, time: str) -> dict:
    """The generic JSON body, also the base of every gate call."""
    meta = experiment.metadata
    return {
        "version": BODY_VERSION,
        "experiment": meta.name,
        "namespace": meta.namespace,
        "strategy": experiment.spec.strategy,
        "phase": status.phase,
        "previousPhase": previous_phase,
        "reason": status.reason,
        "message": status.message,
        "step": status.step,
        "decision": status.analysis.decision if status.analysis else None,
        "weights": dict(status.weights),
        "winner": status.winner,
        "primaryMetric": primary_metric(experiment, status),
        "statusCommand": f"mlrollouts status {meta.name} -n {meta.namespace}",
        "time": time,
    }


def summary(payload: dict[str, Any]) -> str:
    phase = payload["phase"]
    if payload.get("previousPhase") not in (None, phase):
        phase = f"{payload['previousPhase']} → {phase}"
    return f"ModelExperiment {payload['namespace']}/{payload['experiment']}: {phase} ({payload['reason']})"


def _facts(payload: dict[str, Any]) -> list[tuple[str, str]]:
    metric = payload["primaryMetric"]
    weights = ", ".join(f"{name}={weight}%" for name, weight in payload["weights"].items()) or "none"
    verdict = metric["verdict"] or "no verdict yet"
    figures = [
        f"p = {metric['pValue']:.3g}" if metric["pValue"] is not None else None,
        f"P(better) = {metric['probabilityBetter']:.3f}" if metric["probabilityBetter"] is not None else None,
    ]
    shown = ", ".join(f for f in figures if f)
    verdict_text = f"{metric['challenger']}: {verdict}" if metric["challenger"] else verdict
    return [
        ("Weights", weights),
        (metric["name"], f"{verdict_text} ({shown})" if shown else verdict_text),
        ("Status", f"`{payload['statusCommand']}`"),
    ]


def slack(payload: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` for notifications, one attachment with the figures."""
    return {
        "text": summary(payload),
        "attachments": [
            {
                "color": _COLOURS.get(payload["phase"], "#439FE0"),
                "text": payload["message"] or "",
                "fields": [{"title": title, "value": value, "short": False} for title, value in _facts(payload)],
            }
        ],
    }


def msteams(payload: dict[str, Any]) -> dict[str, Any]:
    """A Microsoft Teams message with an Adaptive Card (what Teams Workflows' webhook trigger accepts)."""
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": summary(payload), "weight": "Bolder", "wrap": True},
            {"type": "TextBlock", "text": payload["message"] or "", "wrap": True},
            {"type": "FactSet", "facts": [{"title": title, "value": value} for title, value in _facts(payload)]},
        ],
    }
    return {
        "type": "message",
        "summary": summary(payload),
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
    }


def render(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The body for a receiver of type `kind` (webhook, slack, msteams)."""
    if kind == "slack":
        return slack(payload)
    if kind == "msteams":
        return msteams(payload)
    return payload
