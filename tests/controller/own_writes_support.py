"""Fakes for own_writes' tests: an experiment's body per resourceVersion, kopf's per-object memory (the live body,
a pending patch, the error throttler) and kopf's processor counting the events it was given."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
from kopf._core.actions.throttlers import Throttler

from mlrollouts.controller.handlers import claims_of
from mlrollouts.controller.own_writes import OwnWrites


def body(version: str, phase: str = "Progressing", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlrollouts.dev/v1alpha1",
        "kind": "ModelExperiment",
        "metadata": {
            "name": "exp",
            "namespace": "default",
            "uid": "u-1",
            "generation": 1,
            "resourceVersion": version,
            "finalizers": ["kopf.zalando.org/KopfFinalizerMarker"],
            "annotations": {"mlrollouts.dev/last-handled-configuration": "{}", "mlrollouts.dev/kopf-managed": "yes"},
            "managedFields": [{"manager": "mlrollouts", "time": version}],
        },
        "spec": {"strategy": "abTest", "traffic": {"provider": "gateway"}, **spec},
        "status": {"phase": phase, "lastAnalysisAt": version},
    }


@dataclass
class Memory:
    live: kopf.Body | None
    remaining_patch: dict[str, Any] | None = None
    error_throttler: Throttler = field(default_factory=Throttler)

    @property
    def daemons_memory(self) -> Any:
        return self

    @property
    def live_fresh_body(self) -> kopf.Body | None:
        return self.live


@dataclass
class Memories:
    memory: Memory

    async def recall(self, raw_body: Any, **_: Any) -> Memory:
        return self.memory


@dataclass
class Kopf:
    """kopf's processor, counting the events it was given."""

    seen: list[str] = field(default_factory=list)

    async def process(self, *, raw_event: dict[str, Any], **_: Any) -> str | None:
        self.seen.append(raw_event["object"]["metadata"]["resourceVersion"])
        return None


def setup(
    written: set[str], claims: Any = claims_of, owns: Callable[[str, str], bool] | None = None
) -> tuple[OwnWrites, Kopf, Memory, Any]:
    """`written`: the versions this process's status writes produced; `owns`: the replica's shard check (None:
    standalone, every experiment is this process's)."""
    own = OwnWrites(
        lambda namespace, name, version: (namespace, name) == ("default", "exp") and version in written, claims, owns
    )
    inner = Kopf()
    memory = Memory(kopf.Body(body("1")))
    process = own.wrap(inner.process)

    def deliver(raw: dict[str, Any], kind: str = "MODIFIED") -> None:
        event = {"type": kind, "object": raw}
        asyncio.run(process(raw_event=event, memories=Memories(memory), memobase=None))

    return own, inner, memory, deliver
