"""The read-modify-write cycle and the read-back check that the object-based routers share."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

from mlrollouts.engine.types import Mirror, Split
from mlrollouts.routing.base import AppliedTraffic, RoutingError
from mlrollouts.routing.kube import ObjectClient, ObjectConflict, ObjectNotFound, describe
from mlrollouts.routing.weights import same_split

logger = logging.getLogger(__name__)


async def read_object(
    objects: ObjectClient, api_version: str, plural: str, namespace: str, name: str, field: str
) -> dict[str, Any]:
    """GET, turning 404 into an error that names the spec field to fix."""
    try:
        return await objects.get(api_version, plural, namespace, name)
    except ObjectNotFound as error:
        raise RoutingError(f"{error}: create it or fix {field}") from None


async def update_object(
    objects: ObjectClient,
    api_version: str,
    plural: str,
    namespace: str,
    name: str,
    field: str,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    owned: Sequence[tuple[str, ...]],
) -> bool:
    """GET, change, then server-side apply of the `owned` fields only; one retry on 409.

    The apply carries the resourceVersion read (optimistic concurrency: the owned fields are atomic lists
    computed from what was read, so a concurrent edit must not be overwritten) and is forced. Why force: the
    object's author (kubectl, Argo CD, Helm) necessarily set these fields when creating the object, and
    Istio's `spec.http` and Gateway API's `spec.rules` are atomic lists, so the weights inside them can only
    change by taking the whole list over; without force every write would be a 409 field conflict. Fields
    outside `owned` are not sent and keep their manager. Returns whether anything was written: an unchanged
    object is not written, so re-applying is free.
    """
    for attempt in (1, 2):
        current = await read_object(objects, api_version, plural, namespace, name, field)
        proposed = change(copy.deepcopy(current))
        if proposed == current:
            return False
        try:
            await objects.apply(api_version, plural, namespace, name, apply_body(proposed, owned), force=True)
        except ObjectConflict:
            logger.info("routing conflict object=%s attempt=%d", describe(plural, namespace, name), attempt)
            if attempt == 2:
                raise RoutingError(
                    f"{describe(plural, namespace, name)} kept changing while its weights were updated; "
                    "will retry at the next analysis interval"
                ) from None
            continue
        logger.info("routing updated object=%s", describe(plural, namespace, name))
        return True
    return False


def apply_body(proposed: dict[str, Any], owned: Sequence[tuple[str, ...]]) -> dict[str, Any]:
    """The server-side apply intent: identity, the resourceVersion and uid read, and the owned fields' values.

    The uid makes the server refuse (409) instead of creating the object when it was deleted since the read.
    """
    meta = proposed["metadata"]
    identity = {key: meta[key] for key in ("name", "namespace", "resourceVersion", "uid") if key in meta}
    body: dict[str, Any] = {"apiVersion": proposed["apiVersion"], "kind": proposed["kind"], "metadata": identity}
    for path in owned:
        source: Any = proposed
        for key in path:
            source = source.get(key) if isinstance(source, dict) else None
        if source is None:
            continue  # not set: applying without it gives up ownership (and removes it if nobody else owns it)
        target = body
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = copy.deepcopy(source)
    return body


def normalize_mirror(mirror: Mirror | None, variants: Sequence[str]) -> Mirror | None:
    """Targets in experiment order; a mirror of 0 % or to nobody is no mirror."""
    if mirror is None or mirror.percent <= 0 or not mirror.targets:
        return None
    unknown = sorted(set(mirror.targets) - set(variants))
    if unknown:
        raise RoutingError(f"mirror targets {', '.join(unknown)} are not variants of the experiment {list(variants)}")
    return Mirror(tuple(v for v in variants if v in mirror.targets), mirror.percent)


def verify(read_back: AppliedTraffic, split: Split, mirror: Mirror | None, what: str) -> AppliedTraffic:
    """The applied traffic as read back, or a RoutingError when the object does not say what was written."""
    if not read_back.consistent or not same_split(read_back.split, split) or read_back.mirror != mirror:
        raise RoutingError(
            f"{what} does not hold the traffic just applied: wanted split {dict(split.weights)} mirror "
            f"{format_mirror(mirror)}, read back {dict(read_back.split.weights)} mirror "
            f"{format_mirror(read_back.mirror)}{'; ' + read_back.message if read_back.message else ''}"
        )
    return read_back


def format_mirror(mirror: Mirror | None) -> str:
    return "none" if mirror is None else f"{mirror.percent}% to {', '.join(mirror.targets)}"


def format_split(split: Split) -> str:
    return ", ".join(f"{name} {weight}%" for name, weight in split.weights.items())
