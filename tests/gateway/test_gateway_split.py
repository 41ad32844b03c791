"""Split parsing and the file source; the Kubernetes source is tested against an API server in
tests/routing/test_routing_gateway_watch.py."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from mlrollouts.gateway.split import SplitError, parse_experiment, parse_split_file
from mlrollouts.gateway.split_source import FileSplitSource, follow

VARIANTS = ("churn-v2", "churn-v3")


def test_flat_split_file() -> None:
    state = parse_split_file('{"churn-v2": 90, "churn-v3": 10}', VARIANTS)
    assert state.weights == {"churn-v2": 90, "churn-v3": 10} and not state.shadow


def test_missing_variants_weigh_zero_and_shadow_form_is_understood() -> None:
    state = parse_split_file('{"weights": {"churn-v2": 100}, "phase": "Shadowing", "mirrorPercent": 25}', VARIANTS)
    assert state.weights == {"churn-v2": 100, "churn-v3": 0}
    assert state.shadow and state.mirror_percent == 25


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{churn", "not valid JSON"),
        ('{"churn-v2": 90, "churn-v3": 20}', "sum to 110"),
        ('{"churn-v2": 90, "churn-v9": 10}', "unknown variant 'churn-v9'"),
        ('{"churn-v2": 110, "churn-v3": -10}', "must be >= 0"),
        ('{"churn-v2": "90", "churn-v3": 10}', "must be a number"),
        ("[90, 10]", "non-empty object"),
        ('{"weights": {"churn-v2": 100}, "mirrorPercent": 150}', "mirrorPercent"),
    ],
)
def test_bad_split_files_are_rejected_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(SplitError, match=message):
        parse_split_file(text, VARIANTS)


def experiment(status: dict | None = None, mirror: int | None = None) -> dict:
    spec = {"shadow": {"mirrorPercent": mirror}} if mirror is not None else {}
    return {"kind": "ModelExperiment", "spec": spec, "status": status or {}}


def test_experiment_status_drives_the_split() -> None:
    assert parse_experiment(experiment(), VARIANTS, "churn-v2").weights == {"churn-v2": 100, "churn-v3": 0}
    progressing = parse_experiment(
        experiment({"phase": "Progressing", "weights": {"churn-v2": 75, "churn-v3": 25}}), VARIANTS, "churn-v2"
    )
    assert progressing.weights == {"churn-v2": 75, "churn-v3": 25} and not progressing.shadow
    shadowing = parse_experiment(experiment({"phase": "Shadowing"}, mirror=50), VARIANTS, "churn-v2")
    assert shadowing.shadow and shadowing.mirror_percent == 50
    with pytest.raises(SplitError, match=r"status\.weights weights sum to 90"):
        parse_experiment(experiment({"weights": {"churn-v2": 80, "churn-v3": 10}}), VARIANTS, "churn-v2")


async def test_follow_keeps_the_last_good_split_and_warns(tmp_path: Path, caplog) -> None:
    path = tmp_path / "split.json"
    path.write_text('{"churn-v2": 80, "churn-v3": 20}')
    applied = []
    source = FileSplitSource(path, VARIANTS, interval=0.01)
    task = asyncio.create_task(follow(source, applied.append))
    with caplog.at_level(logging.WARNING):
        await asyncio.sleep(0.05)
        path.write_text('{"churn-v2": 80, "churn-v7": 20}')
        await asyncio.sleep(0.05)
        path.write_text('{"churn-v2": 50, "churn-v3": 50, "x": 0}')
        await asyncio.sleep(0.05)
        path.write_text('{"churn-v2": 50, "churn-v3": 50}')
        await asyncio.sleep(0.05)
    task.cancel()
    assert [state.weights["churn-v3"] for state in applied] == [20, 50]
    assert caplog.text.count("split rejected") == 2
    assert "churn-v7" in caplog.text
