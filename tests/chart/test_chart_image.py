"""The Dockerfile (not buildable here) agrees with what the chart expects of the image."""

from __future__ import annotations

import re

import yaml
from chart_support import CHART_DIR, REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
DOCKERIGNORE = [
    line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
]


def test_base_images_are_pinned_slim_bookworm() -> None:
    assert re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE) == ["python:3.11-slim-bookworm"] * 2


def test_runs_as_the_non_root_uid_the_chart_declares() -> None:
    (user,) = re.findall(r"^USER (\d+):(\d+)$", DOCKERFILE, re.MULTILINE)
    pod = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["podSecurityContext"]
    assert (int(user[0]), int(user[1])) == (pod["runAsUser"], pod["runAsGroup"])
    assert pod["runAsUser"] != 0


def test_entrypoint_is_the_cli_the_chart_calls() -> None:
    assert 'ENTRYPOINT ["mlrollouts"]' in DOCKERFILE
    assert re.search(r'^CMD \["run"', DOCKERFILE, re.MULTILINE)


def test_build_inputs_exist_and_are_not_ignored() -> None:
    sources = [s for line in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.MULTILINE) for s in line.split()]
    assert sources == ["requirements.lock", "pyproject.toml", "README.md", "operator"]
    for source in sources:
        assert (REPO / source).exists()
        assert source not in DOCKERIGNORE
