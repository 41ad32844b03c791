"""The image installs exactly the runtime dependencies, pinned with hashes; emulator and demo ones are an extra."""

from __future__ import annotations

import re
import tomllib

from chart_support import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCK = (REPO / "requirements.lock").read_text()
DOCKERFILE = (REPO / "Dockerfile").read_text()
# "name==version \" or, with an environment marker, "uvloop==0.23.0 ; sys_platform != \"win32\" \"
PINNED = {
    canonicalize_name(name): version
    for name, version in re.findall(r"^([A-Za-z0-9._-]+)==([^\s;]+)(?: ;[^\n]*)? \\$", LOCK, re.M)
}
LOCAL_ONLY = {"kmock", "pytest-asyncio", "matplotlib"}


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_every_runtime_dependency_is_pinned_in_the_lock_within_its_range() -> None:
    for text in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in PINNED, f"{name} is missing from requirements.lock: run `make lock`"
        assert requirement.specifier.contains(PINNED[name]), f"{name}=={PINNED[name]} outside {requirement}"


def test_every_pin_has_a_hash() -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.split("\n", 1)[1] if LOCK.startswith("--") else LOCK)
    entries = [b for b in blocks if "==" in b]
    assert len(entries) == len(PINNED) > 20
    for entry in entries:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_emulator_demo_and_report_dependencies_are_an_extra_not_in_the_image() -> None:
    assert _names(PYPROJECT["project"]["dependencies"]).isdisjoint(LOCAL_ONLY)
    assert _names(PYPROJECT["project"]["optional-dependencies"]["local"]) >= LOCAL_ONLY
    assert set(PINNED).isdisjoint(LOCAL_ONLY)


def test_the_image_installs_the_lock_with_hashes_and_nothing_unpinned() -> None:
    assert "pip install --require-hashes --no-deps -r requirements.lock" in DOCKERFILE
    installs = re.findall(r"pip install ([^\n\\&]+)", DOCKERFILE)
    assert all("--no-deps" in line or "--upgrade pip" in line for line in installs), installs
