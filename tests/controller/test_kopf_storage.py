"""The slim kopf storages (controller/storage.py) give kopf the same essences as kopf's own, so a spec or label
edit is still a change (the analysis loop wakes) and a status write is still none; they only copy less."""

from __future__ import annotations

import copy
from typing import Any

import kopf
import pytest
from kopf._cogs.structs import bodies, diffs
from stack import canary_manifest

from mlrollouts import GROUP
from mlrollouts.controller.reading import ACTION_ANNOTATION
from mlrollouts.controller.storage import SlimDiffBaseStorage, SlimProgressStorage

KEY = "last-handled-configuration"


def experiment(**metadata: Any) -> dict[str, Any]:
    body = canary_manifest("e", "http://prometheus:9090")
    body["metadata"].update(
        uid="0b5e", generation=3, resourceVersion="41", creationTimestamp="2026-12-01T00:00:00Z", **metadata
    )
    body["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:analysis": {}}}}]
    body["status"] = {"phase": "Progressing", "step": 1, "weights": {"churn-v2": 80, "churn-v3": 20}}
    return body


BODIES = {
    "plain": experiment(),
    "labels and annotations": experiment(
        labels={"team": "churn"},
        annotations={
            "team.example/owner": "ml",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            f"{GROUP}/{KEY}": '{"spec": {}}',
            f"{GROUP}/kopf-managed": "yes",
            "other.example/kopf-managed": "yes",
            "other.example/progress": "{}",
        },
    ),
    "empty maps": experiment(labels={}, annotations={}),
}


EXTRA_FIELDS = (
    (),
    (("metadata", "annotations", ACTION_ANNOTATION),),  # the operator's on.field handler
    (("status", "phase"), ("metadata", "labels", "team")),
    (("spec",), ("metadata", "annotations", ACTION_ANNOTATION)),  # the operator's on.update(field="spec") too
    (("spec", "analysis"),),
)


def essences(body: dict[str, Any], slim: bool, extra: tuple = ()) -> tuple[Any, Any]:
    diffbase = (SlimDiffBaseStorage if slim else kopf.AnnotationsDiffBaseStorage)(prefix=GROUP, key=KEY)
    progress = (SlimProgressStorage if slim else kopf.AnnotationsProgressStorage)(prefix=GROUP)
    built = diffbase.build(body=bodies.Body(body), extra_fields=extra)
    return built, progress.clear(essence=built)


@pytest.mark.parametrize("extra", EXTRA_FIELDS)
@pytest.mark.parametrize("name", list(BODIES))
def test_the_slim_storages_build_and_clear_what_kopf_does(name: str, extra: tuple) -> None:
    body = copy.deepcopy(BODIES[name])
    body["metadata"].setdefault("annotations", {})[ACTION_ANNOTATION] = "promote"
    before = copy.deepcopy(body)
    assert essences(body, slim=True, extra=extra) == essences(body, slim=False, extra=extra)
    assert body == before  # the watch's body is left as it came


def test_a_status_write_is_no_change_and_a_spec_or_label_edit_is_one() -> None:
    body = BODIES["labels and annotations"]
    _, old = essences(body, slim=True)
    written = copy.deepcopy(body)
    written["status"]["step"] = 2
    written["metadata"]["resourceVersion"] = "42"
    written["metadata"]["managedFields"].append({"manager": "mlrollouts", "subresource": "status"})
    assert not diffs.diff(old, essences(written, slim=True)[1])
    edited = copy.deepcopy(body)
    edited["spec"]["analysis"]["interval"] = "30s"
    assert diffs.diff(old, essences(edited, slim=True)[1])
    relabelled = copy.deepcopy(body)
    relabelled["metadata"]["labels"]["team"] = "fraud"
    assert diffs.diff(old, essences(relabelled, slim=True)[1])


@pytest.mark.parametrize("extra", [(), (("spec",),)])
def test_the_built_essence_does_not_share_the_spec_with_the_body(extra: tuple) -> None:
    body = copy.deepcopy(BODIES["plain"])
    built, _ = essences(body, slim=True, extra=extra)
    body["spec"]["analysis"]["interval"] = "99s"  # kopf keeps essences across events: they must not follow the body
    assert built["spec"]["analysis"]["interval"] != "99s"
