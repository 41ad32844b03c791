"""`mlrollouts status` explains what holds an experiment: a gate's last answer, a breach not yet ruled out."""

from __future__ import annotations

from rich.console import Console

from mlrollouts.cli.experiment_view import render_experiment


def _shown(status: dict) -> str:
    console = Console(record=True, width=200)
    body = {"metadata": {"name": "fraud-v8", "namespace": "ml"}, "spec": {"strategy": "canary"}, "status": status}
    console.print(render_experiment(body))
    return console.export_text()


def test_status_shows_why_a_gate_holds_the_promotion() -> None:
    text = _shown(
        {
            "phase": "Paused",
            "reason": "ReadyToPromote",
            "webhooks": [
                {
                    "name": "qa",
                    "type": "confirmPromotion",
                    "phase": "Failed",
                    "code": 503,
                    "attempts": 3,
                    "message": "HTTP 503 from the gate",
                },
            ],
        }
    )
    assert "Gates (spec.webhooks)" in text
    assert "confirmPromotion" in text and "Failed" in text and "503" in text


def test_status_shows_a_breach_not_yet_ruled_out() -> None:
    guardrail = {
        "name": "error-rate",
        "variant": "fraud-v8",
        "verdict": "ok",
        "healthy": True,
        "bad": 0,
        "total": 90,
        "cleared": False,
        "uncleared": "fraud-v8 at 0.006 (maxRatio 1.5 x 2)",
    }
    text = _shown({"phase": "Progressing", "guardrails": [guardrail]})
    assert "breach not yet ruled out: fraud-v8 at 0.006" in text
    assert "Gates" not in text
