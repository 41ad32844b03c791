"""`mlrollouts crd` (generate the CRD) and `mlrollouts validate` (lint manifests offline, both layers).

`validate` is what `kubectl argo rollouts lint` is for Argo: the API server's checks (schema, unknown
fields, CEL rules) and the operator's own checks, without a cluster, one line per problem.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from mlrollouts import KIND
from mlrollouts.api.crd import render_crd_yaml
from mlrollouts.api.crd_validation import served_schema, validate_manifest
from mlrollouts.api.errors import SpecError, SpecProblem
from mlrollouts.api.experiment import parse_experiment
from mlrollouts.api.template_crd import render_template_crd_yaml
from mlrollouts.api.template_validation import check_template
from mlrollouts.api.templates import TEMPLATE_KINDS
from mlrollouts.cli.main import UsageFailure, app
from mlrollouts.cli.template_sources import NamespacedFinder, cluster_finder, file_finder, parse_templates
from mlrollouts.metrics.template_refs import find_all, resolve_spec, template_refs
from mlrollouts.metrics.templates import validate_templates


@dataclass(frozen=True)
class DocumentReport:
    source: str
    name: str
    problems: list[SpecProblem]

    def lines(self) -> list[str]:
        if not self.problems:
            return [f"{self.source}: {self.name} valid"]
        return [f"{self.source}: {self.name}: {problem}" for problem in self.problems]


def check_manifest(obj: dict[str, Any], templates: NamespacedFinder | None = None) -> list[SpecProblem]:
    """Both layers' problems, the operator's first (its messages carry the values and the fix).

    The operator layer is the operator's own load: the models, then the query templates and their PromQL.

    A CRD-layer problem at a path the operator already blamed is a duplicate, except a CEL rule the
    operator did not report there (its validators stop at the first broken rule of a model).
    """
    problems: list[SpecProblem] = []
    try:
        experiment = parse_experiment(obj)
        validate_templates(experiment.spec)  # exactly what the operator's load() runs
        if template_refs(experiment.spec):  # then what its tick runs before deciding (controller/templates.py)
            namespace = experiment.metadata.namespace
            find = (templates or file_finder({}))(namespace)
            validate_templates(resolve_spec(experiment.spec, find_all(experiment.spec, find), namespace))
    except SpecError as error:
        problems.extend(error.problems)
    reported = [(p.path, p.message) for p in problems]
    for problem in validate_manifest(obj):
        same_path = [message for path, message in reported if path == problem.path]
        is_rule = problem.message in _cel_messages()
        if same_path and (not is_rule or any(m.startswith(problem.message) for m in same_path)):
            continue
        problems.append(problem)
        reported.append((problem.path, problem.message))
    return problems


@functools.cache
def _cel_messages() -> frozenset[str]:
    found: set[str] = set()

    def walk(schema: dict[str, Any]) -> None:
        found.update(rule["message"] for rule in schema.get("x-kubernetes-validations", []))
        for child in (*schema.get("properties", {}).values(), schema.get("items"), schema.get("additionalProperties")):
            if isinstance(child, dict):
                walk(child)

    walk(served_schema())
    return frozenset(found)


def _documents(source: str, text: str) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UsageFailure("-f", f"{source}: YAML syntax error{where}: {problem}") from None


def check_source(source: str, text: str, templates: NamespacedFinder | None = None) -> list[DocumentReport]:
    """Every ModelExperiment and metric template in a (multi-document) YAML text; other kinds are not ours."""
    reports = []
    for index, document in enumerate(_documents(source, text), start=1):
        if not isinstance(document, dict):
            reports.append(DocumentReport(source, f"document {index}", [SpecProblem(".", "not a YAML mapping")]))
            continue
        name = str((document.get("metadata") or {}).get("name") or f"document {index}")
        if document.get("kind") in TEMPLATE_KINDS:
            reports.append(DocumentReport(source, f"{document['kind']} {name}", check_template(document)))
        elif document.get("kind") == KIND:
            reports.append(DocumentReport(source, name, check_manifest(document, templates)))
    if not reports:
        kinds = f"{KIND}, {' or '.join(TEMPLATE_KINDS)}"
        reports.append(DocumentReport(source, "file", [SpecProblem("kind", f"no {kinds} document found")]))
    return reports


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    if not path.is_file():
        raise UsageFailure("-f", f"{source}: no such file")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageFailure("-f", f"{source}: cannot read: {error}") from None


@app.command("validate")
def validate_command(
    files: Annotated[
        list[str],
        typer.Option("-f", "--filename", help="Manifest file (multi-document YAML allowed); '-' reads stdin."),
    ] = [],  # noqa: B006 - typer copies option defaults; an empty list lets us say how to fix it
    kubeconfig: Annotated[
        str | None,
        typer.Option("--kubeconfig", help="Also resolve templateRefs against this cluster's metric templates."),
    ] = None,
    context: Annotated[str | None, typer.Option("--context", help="Kubeconfig context (with --kubeconfig).")] = None,
) -> int:
    """Check ModelExperiment and metric template manifests against the CRDs (schema + CEL) and the operator's
    rules; templateRefs resolve against the templates in the files, then (--kubeconfig) the cluster's."""
    if not files:
        raise UsageFailure("-f", "give at least one manifest file, e.g. -f examples/churn-v3.yaml ('-' for stdin)")
    if kubeconfig is not None and not Path(kubeconfig).is_file():
        raise UsageFailure("--kubeconfig", f"{kubeconfig}: no such file")
    texts = [(source, _read(source)) for source in files]
    documents = [d for source, text in texts for d in _documents(source, text) if isinstance(d, dict)]
    in_files, _ = parse_templates([d for d in documents if d.get("kind") in TEMPLATE_KINDS])
    cluster = cluster_finder(kubeconfig, context) if kubeconfig else None
    finder = file_finder(in_files, cluster)
    reports = [report for source, text in texts for report in check_source(source, text, finder)]
    for report in reports:
        for line in report.lines():
            typer.echo(line)
    return 1 if any(report.problems for report in reports) else 0


@app.command("crd")
def crd_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the CRD here instead of standard output.")
    ] = None,
    kind: Annotated[
        str, typer.Option("--kind", help="ModelExperiment, MetricTemplate or ClusterMetricTemplate.")
    ] = KIND,
) -> int:
    """Print (or write) a CustomResourceDefinition generated from the API models (ModelExperiment by default)."""
    if kind not in (KIND, *TEMPLATE_KINDS):
        raise UsageFailure("--kind", f"unknown kind {kind!r}: use {KIND}, {', '.join(TEMPLATE_KINDS)}")
    text = render_crd_yaml() if kind == KIND else render_template_crd_yaml(kind)
    if output is None:
        typer.echo(text, nl=False)
        return 0
    if not output.parent.is_dir():
        raise UsageFailure("--output", f"directory {output.parent} does not exist")
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output} ({len(text.encode())} bytes)", err=True)
    return 0
