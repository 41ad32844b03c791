"""Where `mlrollouts validate` finds the metric templates an experiment references.

Offline: MetricTemplate / ClusterMetricTemplate documents in the `-f` files (a MetricTemplate applies to
experiments of its own namespace, `default` when it names none). Online (`--kubeconfig`): the cluster's,
read as the operator reads them. Files win over the cluster, so a template can be tried before it is applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlrollouts import GROUP, VERSION
from mlrollouts.api.errors import SpecError, SpecProblem
from mlrollouts.api.templates import TEMPLATE_KIND, TEMPLATE_PLURALS, MetricTemplate, MetricTemplateSpec, parse_template
from mlrollouts.metrics.template_refs import TemplateKey

# (kind, namespace or None for the cluster kind, name)
StoredKey = tuple[str, str | None, str]
NamespacedFinder = Callable[[str], Callable[[TemplateKey], MetricTemplateSpec | None]]


def stored_key(template: MetricTemplate) -> StoredKey:
    namespace = (template.metadata.namespace or "default") if template.kind == TEMPLATE_KIND else None
    return (template.kind, namespace, template.metadata.name)


def parse_templates(documents: list[dict[str, Any]]) -> tuple[dict[StoredKey, MetricTemplateSpec], list[SpecProblem]]:
    """The valid templates among the documents, and each invalid one's problems (prefixed with its name)."""
    found: dict[StoredKey, MetricTemplateSpec] = {}
    problems: list[SpecProblem] = []
    for document in documents:
        try:
            template = parse_template(document)
        except SpecError as error:
            problems.extend(error.problems)
            continue
        found[stored_key(template)] = template.spec
    return found, problems


def file_finder(
    templates: dict[StoredKey, MetricTemplateSpec], cluster: NamespacedFinder | None = None
) -> NamespacedFinder:
    """Per experiment namespace, a finder over the files' templates, then the cluster's when given."""

    def for_namespace(namespace: str) -> Callable[[TemplateKey], MetricTemplateSpec | None]:
        fallback = cluster(namespace) if cluster is not None else None

        def find(key: TemplateKey) -> MetricTemplateSpec | None:
            kind, name = key
            template = templates.get((kind, namespace if kind == TEMPLATE_KIND else None, name))
            if template is None and fallback is not None:
                return fallback(key)
            return template

        return find

    return for_namespace


def cluster_finder(kubeconfig: str, context: str | None = None) -> NamespacedFinder:
    """Reads templates with the kubernetes client; a template the cluster holds but is invalid is an error."""
    import kubernetes

    api = kubernetes.client.CustomObjectsApi(
        kubernetes.config.new_client_from_config(config_file=kubeconfig, context=context)
    )

    def for_namespace(namespace: str) -> Callable[[TemplateKey], MetricTemplateSpec | None]:
        def find(key: TemplateKey) -> MetricTemplateSpec | None:
            kind, name = key
            plural = TEMPLATE_PLURALS[kind]
            try:
                if kind == TEMPLATE_KIND:
                    body = api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
                else:
                    body = api.get_cluster_custom_object(GROUP, VERSION, plural, name)
            except kubernetes.client.ApiException as error:
                if error.status == 404:
                    return None
                what = f"reading {kind} {name} from the cluster failed: HTTP {error.status} {error.reason}"
                raise SpecError([SpecProblem("--kubeconfig", what)]) from None
            except Exception as error:  # urllib3: the API server is unreachable
                what = f"reading {kind} {name}: the cluster is unreachable: {type(error).__name__}: {error}"
                raise SpecError([SpecProblem("--kubeconfig", what[:300])]) from None
            return parse_template(body).spec

        return find

    return for_namespace
