"""The MetricTemplate and ClusterMetricTemplate CRDs, generated from api/templates.py like ModelExperiment's."""

from __future__ import annotations

from typing import Any

import yaml

from mlrollouts import GROUP
from mlrollouts.api.crd import custom_resource_definition, structural_schema
from mlrollouts.api.templates import CLUSTER_TEMPLATE_KIND, TEMPLATE_KIND, TEMPLATE_PLURALS, MetricTemplateSpec

TEMPLATE_CRD_FILES = {kind: f"crds/{plural}.{GROUP}.yaml" for kind, plural in TEMPLATE_PLURALS.items()}
_DESCRIPTIONS = {
    TEMPLATE_KIND: "Reusable metric queries for the experiments of one namespace, referenced by templateRef.",
    CLUSTER_TEMPLATE_KIND: "Reusable metric queries for every namespace (e.g. a mesh's standard metrics), "
    "referenced by templateRef with kind: ClusterMetricTemplate.",
}
_SHORT_NAMES = {TEMPLATE_KIND: ["mtpl"], CLUSTER_TEMPLATE_KIND: ["cmtpl"]}


def generate_template_crd(kind: str) -> dict[str, Any]:
    """The CustomResourceDefinition of one template kind (no status: templates are read, never written)."""
    plural = TEMPLATE_PLURALS[kind]
    spec = structural_schema(MetricTemplateSpec)
    spec["description"] = "Queries as in an inline metric, with {{args.NAME}} placeholders for the arguments."
    return custom_resource_definition(
        kind=kind,
        plural=plural,
        short_names=_SHORT_NAMES[kind],
        namespaced=kind == TEMPLATE_KIND,
        description=_DESCRIPTIONS[kind],
        properties={"spec": spec},
        printer_columns=[
            {"name": "Description", "type": "string", "jsonPath": ".spec.description"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        status_subresource=False,
    )


def render_template_crd_yaml(kind: str) -> str:
    header = "# Generated from operator/mlrollouts/api by `make crds` (mlrollouts crd --kind). Do not edit by hand.\n"
    return header + yaml.safe_dump(generate_template_crd(kind), sort_keys=False, width=120, allow_unicode=True)
