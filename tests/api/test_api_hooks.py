"""spec.webhooks and spec.notifications: bounds and clear errors naming the field, in the operator's parser and
in `mlrollouts validate` (which must give the same verdict), and a valid example accepted by both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from api_support import load_example, python_problems

from mlrollouts.cli.api_commands import check_manifest
from mlrollouts.cli.main import main

GATE = {"name": "confirm", "type": "confirmPromotion", "url": "https://approvals.platform/churn"}
RECEIVER = {"name": "team", "type": "slack", "urlSecretRef": {"name": "mlrollouts-notify", "key": "slack"}}


def _with(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    manifest = load_example("churn-v3.yaml")
    manifest["spec"]["webhooks"] = [dict(GATE)]
    manifest["spec"]["notifications"] = [dict(RECEIVER)]
    mutate(manifest["spec"])
    return manifest


BAD: dict[str, tuple[Callable[[dict[str, Any]], None], str, str]] = {
    "timeout over 60s": (lambda s: s["webhooks"][0].__setitem__("timeout", "61s"), "spec.webhooks[0].timeout", "60s"),
    "timeout not a duration": (
        lambda s: s["webhooks"][0].__setitem__("timeout", "soon"),
        "spec.webhooks[0].timeout",
        "",
    ),
    "too many retries": (lambda s: s["webhooks"][0].__setitem__("retries", 6), "spec.webhooks[0].retries", "5"),
    "unknown gate type": (
        lambda s: s["webhooks"][0].__setitem__("type", "pre-rollout"),
        "spec.webhooks[0].type",
        "preStart",
    ),
    "not an http url": (
        lambda s: s["webhooks"][0].__setitem__("url", "file:///etc/passwd"),
        "spec.webhooks[0].url",
        "",
    ),
    "21 gates": (
        lambda s: s.__setitem__("webhooks", [{**GATE, "name": f"g{i}"} for i in range(21)]),
        "spec.webhooks",
        "20",
    ),
    "two gates, one name": (lambda s: s["webhooks"].append(dict(GATE)), "spec.webhooks", "unique"),
    "unknown receiver type": (
        lambda s: s["notifications"][0].__setitem__("type", "discord"),
        "spec.notifications[0].type",
        "msteams",
    ),
    "receiver without a Secret": (
        lambda s: s["notifications"][0].pop("urlSecretRef"),
        "spec.notifications[0].urlSecretRef",
        "",
    ),
    "11 receivers": (
        lambda s: s.__setitem__("notifications", [{**RECEIVER, "name": f"r{i}"} for i in range(11)]),
        "spec.notifications",
        "10",
    ),
    "two receivers, one name": (lambda s: s["notifications"].append(dict(RECEIVER)), "spec.notifications", "unique"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_gates_and_receivers_name_the_field(case: str) -> None:
    mutate, path, words = BAD[case]
    problems = python_problems(_with(mutate))
    assert [p.path for p in problems] == [path], problems
    assert words in problems[0].message


@pytest.mark.parametrize("case", list(BAD))
def test_validate_agrees_with_the_operator(case: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(_with(BAD[case][0])))
    assert main(["validate", "-f", str(path)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err and BAD[case][1] in out.out


def test_a_valid_manifest_with_gates_and_receivers_passes_both_layers(tmp_path) -> None:
    hooks = [
        {"name": "smoke", "type": "preStart", "url": "http://smoke.tests:8080/", "timeout": "30s", "retries": 0},
        {"name": "load", "type": "loadTest", "url": "http://loadtester.tests/", "metadata": {"cmd": "hey -z 1m"}},
        {"name": "page", "type": "onRollback", "url": "http://pager.platform/hook"},
        GATE,
    ]
    manifest = _with(lambda s: s.__setitem__("webhooks", hooks))
    assert python_problems(manifest) == []
    assert check_manifest(manifest) == []
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(manifest))
    assert main(["validate", "-f", str(path)]) == 0
