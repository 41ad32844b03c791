"""Split parsing and both split sources (file, Kubernetes API through a fake transport)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import httpx
import pytest

from mlrollouts.gateway.split import SplitError, parse_experiment, parse_split_file
from mlrollouts.gateway.split_source import (
    ApiSplitSource,
    ClusterAccess,
    FileSplitSource,
    follow,
    in_cluster_access,
    load_kubeconfig,
)

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


async def test_api_source_sends_the_token_and_reports_only_changes() -> None:
    seen: list[httpx.Request] = []
    document = experiment({"phase": "Progressing", "weights": {"churn-v2": 95, "churn-v3": 5}})

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/modelexperiments/churn-exp"):
            return httpx.Response(200, json=document)
        return httpx.Response(404, json={"reason": "NotFound"})

    access = ClusterAccess("http://api.test", "s3cret", True)
    source = ApiSplitSource(access, "ml", "churn-exp", VARIANTS, "churn-v2", transport=httpx.MockTransport(handler))
    first = await source.poll()
    assert first is not None and first.weights == {"churn-v2": 95, "churn-v3": 5}
    assert await source.poll() is None
    document["status"]["weights"] = {"churn-v2": 90, "churn-v3": 10}
    changed = await source.poll()
    assert changed is not None and changed.weights["churn-v3"] == 10
    assert seen[0].url.path == "/apis/mlrollouts.dev/v1alpha1/namespaces/ml/modelexperiments/churn-exp"
    assert seen[0].headers["authorization"] == "Bearer s3cret"
    missing = ApiSplitSource(access, "ml", "other", VARIANTS, "churn-v2", transport=httpx.MockTransport(handler))
    with pytest.raises(SplitError, match="answered 404"):
        await missing.poll()
    await source.close()
    await missing.close()


def test_kubeconfig_current_context_gives_server_and_token(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "current-context": "local",
                "contexts": [{"name": "local", "context": {"cluster": "emu", "user": "dev"}}],
                "clusters": [{"name": "emu", "cluster": {"server": "http://127.0.0.1:8001/"}}],
                "users": [{"name": "dev", "user": {"token": "abc"}}],
            }
        )
    )
    access = load_kubeconfig(path)
    assert (access.server, access.bearer()) == ("http://127.0.0.1:8001", "abc")
    path.write_text("current-context: nowhere\ncontexts: []\n")
    with pytest.raises(SplitError, match="no context named 'nowhere'"):
        load_kubeconfig(path)


def test_in_cluster_access_reads_the_rotating_token(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first\n")
    access = in_cluster_access({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, tmp_path)
    assert access.server == "https://10.0.0.1:443" and access.bearer() == "first"
    (tmp_path / "token").write_text("second\n")
    assert access.bearer() == "second"
    with pytest.raises(SplitError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster_access({}, tmp_path)


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
