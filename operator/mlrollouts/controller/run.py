"""Start the operator: kopf with our settings, the metrics endpoint, and the runtime in kopf's memo."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
from collections.abc import Iterator

import kopf
import kubernetes.aio.config
from kopf._cogs.clients import watching  # the watch stream kopf's watchers read (own_writes)
from kopf._core.reactor import processing  # the per-event processor kopf's watchers call (own_writes)

from mlrollouts import GROUP, PLURAL
from mlrollouts.controller import readiness, telemetry
from mlrollouts.controller.leases import LeaseApi, ShardingConfig
from mlrollouts.controller.own_writes import OwnWrites
from mlrollouts.controller.ports import Runtime
from mlrollouts.controller.sharding import ShardManager
from mlrollouts.controller.storage import SlimDiffBaseStorage, SlimProgressStorage
from mlrollouts.controller.write_guard import GuardedObjects
from mlrollouts.hooks.policy import HookPolicy
from mlrollouts.metrics.policy import CredentialPolicy
from mlrollouts.routing.kube import KubeObjects
from mlrollouts.routing.kubeconfig import aio_configuration, incluster_configuration

log = logging.getLogger(__name__)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: object) -> None:
    # Progress and diff-base in annotations: `status` belongs to the experiment alone, replaced whole each tick.
    # kopf's own storages, cheaper per watch event (controller/storage.py): each status write comes back as one.
    settings.persistence.progress_storage = SlimProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = SlimDiffBaseStorage(prefix=GROUP, key="last-handled-configuration")
    settings.posting.level = logging.WARNING  # our Events are explicit; kopf's own are for trouble only
    # A restarted or compacted API server needs no setting: kopf resumes a cut watch from its last version and
    # re-lists on 410 Gone (tests/controller/test_apiserver_restart.py, on the real kube-apiserver + etcd).
    settings.watching.server_timeout = int(os.environ.get("MLROLLOUTS_WATCH_TIMEOUT", "300"))
    settings.watching.client_timeout = settings.watching.server_timeout + 10
    settings.networking.request_timeout = 30
    # Replicas with equal peering priorities pause each other; a random one elects a single active replica.
    settings.peering.priority = random.randint(0, 32767)
    # A replica that dies without a word is presumed gone after `lifetime` seconds (kopf's default is 60 s,
    # a minute with no analysis); keep-alives go out well within it.
    settings.peering.lifetime = int(os.environ.get("MLROLLOUTS_PEERING_LIFETIME", "20"))
    # The chart grants no cluster-wide list on namespaces or CRDs: the namespaces are given, not discovered.
    settings.scanning.disabled = True


@kopf.on.startup()
async def start_readiness(memo: kopf.Memo, **_: object) -> None:
    """/readyz on its own port, started once kopf's startup is done (before that the pod is not ready)."""
    port = memo.get("readiness_port")
    if port:
        check = readiness.api_check(memo.runtime.objects.read_path, memo.namespaces)
        memo.readiness_runner = await readiness.serve(readiness.Readiness(check), port)


@kopf.on.cleanup()
async def stop_readiness(memo: kopf.Memo, **_: object) -> None:
    runner = memo.get("readiness_runner")
    if runner is not None:
        await runner.cleanup()


@kopf.on.cleanup()
async def drain_notifications(memo: kopf.Memo, **_: object) -> None:
    """Queued notifications get a few seconds to go out before the process exits (delivery is at most once)."""
    await memo.runtime.close()


@kopf.on.startup()
async def start_sharding(memo: kopf.Memo, **_: object) -> None:
    """Active-active: the shard Lease loop runs on kopf's event loop, beside the experiments' analysis loops."""
    shards: ShardManager | None = memo.get("shards")
    if shards is not None:
        memo.shards_task = asyncio.create_task(shards.run())


@kopf.on.cleanup()
async def stop_sharding(memo: kopf.Memo, **_: object) -> None:
    """A graceful stop frees this replica's shards at once instead of making the others wait for expiry."""
    shards: ShardManager | None = memo.get("shards")
    task = memo.get("shards_task")
    if shards is None or task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    try:
        await asyncio.wait_for(shards.release_all(), timeout=shards.config.renew_deadline)
    except Exception as error:  # the Leases lapse on their own
        log.warning("could not release shards on shutdown: %s", error)


def object_client() -> KubeObjects:
    """The async API client (kubernetes.aio): the pod's service account when there is one, else $KUBECONFIG /
    ~/.kube/config (as kubectl). One for the ticks, routers and Events, another for the shard Leases."""
    try:
        return KubeObjects(incluster_configuration())
    except kubernetes.aio.config.ConfigException:
        return KubeObjects(aio_configuration())


GC_THRESHOLDS = (50_000, 20, 20)
"""Python's default (700, 10, 10) ran a young collection every 700 allocations; a tick allocates thousands (a
watch event's body, the status models, JSON), and a py-spy profile at 300 experiments put a tenth of the event
loop's CPU in collections. Nearly all of a tick's garbage is freed by reference counting, so rarer collections
find less alive and cost less in all; cycles (asyncio futures, tracebacks) still go, a little later."""


def tune_gc() -> None:
    """Rarer collections, and the start-up heap (modules, kopf's registry) moved out of every future one."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_operator(
    namespaces: list[str],
    *,
    standalone: bool,
    peering: str,
    metrics_port: int | None,
    liveness_port: int | None,
    readiness_port: int | None = None,
    credentials: CredentialPolicy | None = None,
    hooks: HookPolicy | None = None,
    sharding: ShardingConfig | None = None,
) -> None:
    import mlrollouts.controller.handlers

    if metrics_port:
        telemetry.serve(metrics_port)
    shards = ShardManager(sharding, LeaseApi(object_client(), sharding.namespace)) if sharding else None
    kube = object_client()
    if shards is not None:
        kube.write_check = shards.check_write  # again after any await before the send (a token refresh)
    objects = GuardedObjects(kube, shards)
    runtime = Runtime(objects, credentials=credentials or CredentialPolicy(), hooks=hooks or HookPolicy())
    if sharding is not None:
        standalone = True  # the shard Leases replace kopf peering: every replica is active
        log.info(
            "active-active identity=%s shards=%s lease_namespace=%s lease=%ss renew_deadline=%ss retry=%ss",
            sharding.identity,
            sharding.shards,
            sharding.namespace,
            sharding.lease_duration,
            sharding.renew_deadline,
            sharding.retry_period,
        )
    log.info(
        "operator starting namespaces=%s standalone=%s peering=%s prometheus_allowed=%s secret_names=%s",
        namespaces or "*",
        standalone,
        peering,
        list(runtime.credentials.allowed_addresses),
        sorted(runtime.credentials.secret_names),
    )
    log.info(
        "webhooks_allowed=%s notifications_allowed=%s notification_secrets=%s default_receivers=%s",
        list(runtime.hooks.gate_addresses),
        list(runtime.hooks.notification_addresses),
        sorted(runtime.hooks.notification_secret_names),
        [receiver.name for receiver in runtime.hooks.default_receivers],
    )
    tune_gc()
    own_writes = OwnWrites(runtime.wrote, mlrollouts.controller.handlers.claims_of, shards.owns if shards else None)
    with operator_loop() as loop, short_circuited(own_writes):
        kopf.run(
            loop=loop,
            standalone=standalone,
            peering_name=None if standalone else peering,
            namespaces=namespaces,
            clusterwide=not namespaces,
            liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None,
            memo=kopf.Memo(runtime=runtime, readiness_port=readiness_port, namespaces=namespaces, shards=shards),
        )


@contextlib.contextmanager
def operator_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The loop kopf runs on: uvloop when installed, as `kopf run` does (kopf.run() alone does not), else
    asyncio's; owned, and closed as asyncio.run would. The default loop's pure-Python selector, SSL transport and
    callback handling were about a sixth of the operator's CPU per tick (py-spy, 300 experiments)."""
    try:
        import uvloop
    except ImportError:  # Windows: the default loop
        factory = asyncio.new_event_loop
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        yield runner.get_loop()


@contextlib.contextmanager
def short_circuited(own_writes: OwnWrites) -> Iterator[None]:
    """kopf's watchers, spawned inside, read own_writes' filter of the watch stream and call its wrapper of
    process_resource_event (both module attributes, looked up when a watcher starts); restored after."""
    original_process, original_stream = processing.process_resource_event, watching.infinite_watch
    experiments = lambda resource: resource.group == GROUP and resource.plural == PLURAL  # noqa: E731
    processing.process_resource_event = own_writes.wrap(original_process)  # type: ignore[assignment]
    watching.infinite_watch = own_writes.filter(original_stream, experiments)
    try:
        yield
    finally:
        processing.process_resource_event = original_process  # type: ignore[assignment]
        watching.infinite_watch = original_stream
