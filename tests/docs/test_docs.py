"""The README and docs/ stay true to the code: commands, flags, reasons, example files, Helm values, manifests.

Everything is collected mechanically, so a new CLI command, condition reason or Helm value that the docs get
wrong (or a new reason the docs do not mention) fails here without anyone updating a list.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from mlrollouts.api import parse_experiment
from mlrollouts.cli.main import COMMAND_MODULES, app

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "mlrollouts"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TROUBLESHOOTING = REPO / "docs" / "troubleshooting.md"
VALUES = REPO / "charts" / "mlrollouts" / "values.yaml"

# Directories whose CamelCase string literals are what users see as reasons, phases and condition types.
REASON_SOURCES = ("engine", "controller", "hooks/notifier.py")  # not hooks/payloads.py: Slack/Teams card words
# CamelCase literals there that are not reasons: Event types and condition statuses.
NOT_REASONS = frozenset({"Normal", "Warning", "True", "False", "Unknown", "Event"})  # "Event": an object kind
CAMEL_CASE = re.compile(r"[A-Z][a-z]+(?:[A-Z][a-z0-9]*)*")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`([^`\n]+)`")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def doc_ids() -> list[str]:
    return [str(p.relative_to(REPO)) for p in DOCS]


# --- CLI commands and flags -------------------------------------------------------------------------------


@cache
def cli_commands() -> dict[str, Any]:
    """Command name -> click command, with every command module imported (typer may vendor its own click)."""
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    return dict(typer.main.get_command(app).commands)


def code_snippets(text: str) -> Iterator[str]:
    """Lines of fenced blocks and inline code spans: the places where a reader copies a command from."""
    for block in FENCE.findall(text):
        yield from block.splitlines()
    yield from INLINE_CODE.findall(FENCE.sub("", text))


def command_invocations(snippet: str) -> Iterator[list[str]]:
    """`mlrollouts CMD args...` per shell segment, after prompts, env assignments and venv paths."""
    for segment in re.split(r"&&|\|\||[;|&()]", snippet):
        words = segment.split("#", 1)[0].split()
        while words and (words[0] == "$" or re.fullmatch(r"[A-Z_]+=\S*", words[0])):
            words = words[1:]
        if len(words) >= 2 and words[0].rsplit("/", 1)[-1] == "mlrollouts" and re.fullmatch(r"[a-z][\w-]*", words[1]):
            yield words[1:]


def documented_invocations() -> list[tuple[str, list[str]]]:
    return [(p.name, inv) for p in DOCS for s in code_snippets(read(p)) for inv in command_invocations(s)]


def test_command_parser_finds_commands_in_code_only() -> None:
    text = "mlrollouts makes decisions.\n```bash\n$ KUBECONFIG=x .venv/bin/mlrollouts plan --json  # c\n```\n"
    text += "and `mlrollouts status NAME -o json`, not `helm install mlrollouts charts/mlrollouts`"
    found = [inv for s in code_snippets(text) for inv in command_invocations(s)]
    assert found == [["plan", "--json"], ["status", "NAME", "-o", "json"]]


def test_docs_show_many_commands() -> None:
    shown = {inv[0] for _, inv in documented_invocations()}
    assert {"plan", "analyze", "validate", "status", "promote", "apiserver", "run", "gateway"} <= shown


@pytest.mark.parametrize("doc", DOCS, ids=doc_ids())
def test_every_documented_command_exists(doc: Path) -> None:
    commands = cli_commands()
    shown = {inv[0] for s in code_snippets(read(doc)) for inv in command_invocations(s)}
    unknown = sorted(shown - set(commands))
    assert not unknown, f"{doc.name} mentions mlrollouts commands that do not exist: {unknown}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_ids())
def test_every_documented_flag_exists(doc: Path) -> None:
    commands = cli_commands()
    wrong = []
    for snippet in code_snippets(read(doc)):
        for name, *args in command_invocations(snippet):
            if name not in commands:
                continue
            known = {opt for param in commands[name].params for opt in (*param.opts, *param.secondary_opts)}
            known.add("--help")
            for arg in args:
                flag = arg.split("=", 1)[0]
                if re.fullmatch(r"--?[a-zA-Z][\w-]*", flag) and flag not in known:
                    wrong.append(f"mlrollouts {name} {flag}")
    assert not wrong, f"{doc.name} shows flags the CLI does not have: {sorted(set(wrong))}"


# --- Reasons, phases, conditions ------------------------------------------------------------------------


def camel_case_literals(source: str) -> set[str]:
    """CamelCase string constants of a module, except the names listed in `__all__`."""
    tree = ast.parse(source)
    exported: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            exported |= {id(c) for c in ast.walk(node.value)}
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in exported
        and CAMEL_CASE.fullmatch(node.value)
        and node.value not in NOT_REASONS
    }


@cache
def emitted_reasons() -> frozenset[str]:
    found: set[str] = set()
    for directory in REASON_SOURCES:
        source = PACKAGE / directory
        for path in [source] if source.is_file() else sorted(source.rglob("*.py")):
            found |= camel_case_literals(read(path))
    return frozenset(found)


def documented_names(text: str) -> set[str]:
    return {m for m in INLINE_CODE.findall(text) if CAMEL_CASE.fullmatch(m)}


def table_reasons(text: str) -> set[str]:
    """The first cell of every table row when it is a backticked CamelCase name."""
    return set(re.findall(r"^\| `([A-Z][A-Za-z]+)` \|", text, re.MULTILINE))


def test_reason_collector_sees_new_reasons() -> None:
    source = 'pause(tick, "BrandNewReason", m)\nEvent("Warning", "OtherReason", m)\n__all__ = ["Decision"]\n'
    assert camel_case_literals(source) == {"BrandNewReason", "OtherReason"}


def test_reason_collector_finds_the_known_reasons() -> None:
    known = {"InvalidSpec", "Conflict", "MetricsUnavailable", "SampleRatioMismatch", "ReadyToPromote"}
    assert known | {"ManualPause", "GuardrailFailed", "ShadowPassed", "ChampionBest", "TrafficDrift"} <= set(
        emitted_reasons()
    )


def test_every_reason_the_operator_can_set_is_in_troubleshooting() -> None:
    missing = sorted(emitted_reasons() - documented_names(read(TROUBLESHOOTING)))
    assert not missing, f"docs/troubleshooting.md does not explain: {missing}"


def test_troubleshooting_documents_no_reason_the_operator_never_sets() -> None:
    stale = sorted(table_reasons(read(TROUBLESHOOTING)) - emitted_reasons())
    assert not stale, f"docs/troubleshooting.md lists reasons the code never sets: {stale}"


# --- Files and links -------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS, ids=doc_ids())
def test_every_referenced_example_exists(doc: Path) -> None:
    referenced = set(re.findall(r"examples/[\w.*-]+\.ya?ml", read(doc)))
    missing = sorted(r for r in referenced if not list(REPO.glob(r)))
    assert not missing, f"{doc.name} references example files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_ids())
def test_relative_links_resolve(doc: Path) -> None:
    links = re.findall(r"\]\((?!https?://|#)([^)#\s]+)", read(doc))
    missing = sorted(link for link in links if not (doc.parent / link).exists())
    assert not missing, f"{doc.name} links to missing files: {missing}"


# --- Helm values ------------------------------------------------------------------------------------------


@cache
def helm_values() -> dict:
    return yaml.safe_load(read(VALUES))


def resolves(path: str) -> bool:
    """The key exists in values.yaml, or lies under a free-form map there (e.g. `labels: {}`)."""
    node: object = helm_values()
    for key in path.split("."):
        if node == {}:
            return True
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def mentioned_value_keys(text: str) -> set[str]:
    """`--set KEY=` keys, and backticked dotted names whose first segment is a top-level chart value."""
    keys = set(re.findall(r"--set(?:-string)?\s+'?([\w.]+)=", text))
    top_level = set(helm_values())
    for span in INLINE_CODE.findall(text):
        for token in re.split(r"[\s,]+", span):
            if re.fullmatch(r"[a-z][A-Za-z]*(?:\.[a-z][A-Za-z]*)*", token) and token.split(".")[0] in top_level:
                keys.add(token)
    return keys


def test_value_key_collector() -> None:
    text = "`gateway.enabled`, `image.repository`, `image.tag` and --set metrics.serviceMonitor.enabled=true "
    text += "but not `spec.traffic.gateway` or `status.weights`"
    assert mentioned_value_keys(text) == {
        "gateway.enabled",
        "image.repository",
        "image.tag",
        "metrics.serviceMonitor.enabled",
    }


def test_readme_names_the_key_values() -> None:
    keys = mentioned_value_keys(read(REPO / "README.md"))
    assert {"replicaCount", "watchNamespaces", "gateway.enabled", "grafana.dashboard.enabled"} <= keys


@pytest.mark.parametrize("doc", DOCS, ids=doc_ids())
def test_every_mentioned_helm_value_exists(doc: Path) -> None:
    wrong = sorted(k for k in mentioned_value_keys(read(doc)) if not resolves(k))
    assert not wrong, f"{doc.name} mentions Helm values missing from values.yaml: {wrong}"


# --- Manifests shown in the docs --------------------------------------------------------------------------


def documented_manifests() -> list[tuple[str, dict]]:
    found = []
    for doc in DOCS:
        for block in re.findall(r"^```yaml\n(.*?)^```", read(doc), re.DOTALL | re.MULTILINE):
            for document in yaml.safe_load_all(block):
                if isinstance(document, dict) and document.get("kind") == "ModelExperiment":
                    found.append((doc.name, document))
    return found


def test_manifests_in_the_docs_are_valid() -> None:
    manifests = documented_manifests()
    assert manifests, "the README shows a ModelExperiment"
    for name, manifest in manifests:
        experiment = parse_experiment(manifest)
        assert experiment.spec.strategy, name
