"""Several active-active operator replicas on one local stack: start, scrape, kill, and survey the experiments.

Shared by the active-active test (tests/controller/test_active_active.py), benchmarks/bench_replicas.py and
benchmarks/bench_operator.py (spawn_operator, the experiment).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import kubernetes
import urllib3
from prometheus_client.parser import text_string_to_metric_families

from mlrollouts.localstack import ports

GROUP, VERSION, PLURAL = "mlrollouts.dev", "v1alpha1", "modelexperiments"


def spawn_operator(
    kubeconfig: pathlib.Path, log_path: pathlib.Path, arguments: list[str], interval_floor: str = "1s"
) -> tuple[subprocess.Popen[bytes], int]:
    """`mlrollouts run --namespace default ARGUMENTS` as a child process logging to `log_path`, with its metrics on a
    free port (returned) and no liveness port; `interval_floor` lowers the API's analysis-interval floor so that a
    benchmark can load the operator harder than a tenant may. Returns once the child serves its metrics port
    itself (or exited: the caller reads the log), started again on a new port if another process took it."""
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "MLROLLOUTS_WATCH_TIMEOUT": "60",
        "MLROLLOUTS_MIN_INTERVAL": interval_floor,
    }
    command = [sys.executable, "-m", "mlrollouts.cli.main", "run", "--namespace", "default", *arguments]
    with_port = lambda port: [*command, "--metrics-port", str(port), "--liveness-port", "0"]  # noqa: E731
    return start_on_free_port(with_port, env, log_path)


def start_on_free_port(
    command_for: Callable[[int], list[str]], env: dict[str, str], log_path: pathlib.Path, timeout: float = 120.0
) -> tuple[subprocess.Popen[bytes], int]:
    """A child given one free port on its command line (ports.start_owning)."""
    child, (port,) = ports.start_owning(lambda picked: command_for(picked[0]), 1, env, log_path, timeout)
    return child, port


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the operator's clean shutdown), SIGKILL after 20 s."""
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@dataclass
class Replica:
    """`mlrollouts run --shards S` as a child process; SIGKILL is a crashed pod."""

    identity: str
    kubeconfig: pathlib.Path
    log_path: pathlib.Path
    shards: int
    interval_floor: str = "1s"
    metrics_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Replica:
        arguments = ["--shards", str(self.shards), "--replica-id", self.identity, "--lease-namespace", "default"]
        self.process, self.metrics_port = spawn_operator(self.kubeconfig, self.log_path, arguments, self.interval_floor)
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive and self.process is not None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.alive and self.process is not None:
            stop_process(self.process)

    def metrics(self, strict: bool = False) -> dict[str, float]:
        """Every sample as `name{label=value,...}` -> value. Lenient: empty while the endpoint is not up (or too
        slow); strict (figures that are subtracted): a few tries, then the error, never a silent 0."""
        for attempt in range(5 if strict else 1):
            try:
                text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
                break
            except httpx.HTTPError:
                if strict and attempt == 4:
                    raise
        else:
            return {}
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
        return samples

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def held_shards(metrics: dict[str, float]) -> set[int]:
    prefix = "mlrollouts_shard_held{shard="
    return {int(key[len(prefix) : -1]) for key, value in metrics.items() if key.startswith(prefix) and value == 1}


def total(metrics: dict[str, float], name: str) -> float:
    """A metric summed over its labels (counters by their `_total` sample)."""
    return sum(value for key, value in metrics.items() if key.split("{", 1)[0] == name)


def experiment_manifest(name: str, prometheus: str, interval_s: int) -> dict[str, Any]:
    """An A/B test of two equal models through the built-in gateway: it stays Progressing and ticks throughout."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelExperiment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "strategy": "abTest",
            "champion": {"name": "churn-v2", "service": "churn-v2"},
            "challengers": [{"name": "churn-v3", "service": "churn-v3"}],
            "traffic": {"provider": "gateway"},
            "abTest": {"maxDuration": "14d"},
            "analysis": {
                "interval": f"{interval_s}s",
                "prometheus": {"address": prometheus, "timeout": "5s"},
                "primaryMetric": {
                    "name": "retention",
                    "successes": 'sum(model_outcomes_total{variant="{{variant}}",outcome="success"})',
                    "trials": 'sum(model_outcomes_total{variant="{{variant}}"})',
                    "minimumDetectableEffect": 0.05,
                },
                "statistics": {"method": "sequential", "alpha": 0.05},
            },
            "metricsFailureLimit": 30,
        },
    }


def last_analysed(items: list[dict[str, Any]]) -> dict[str, datetime | None]:
    """Each experiment's status.lastAnalysisAt (None before its first analysis)."""
    found = {}
    for item in items:
        stamp = (item.get("status") or {}).get("lastAnalysisAt")
        found[item["metadata"]["name"]] = datetime.fromisoformat(stamp) if stamp else None
    return found


class StalenessWatch:
    """The longest any experiment went without an analysis, from status.lastAnalysisAt sampled by polling.

    An experiment's staleness at a poll is (poll time - lastAnalysisAt); the maximum over polls bounds how long it
    was left unanalysed, to within one poll period.
    """

    def __init__(self) -> None:
        self.worst: dict[str, float] = {}

    def sample(self, items: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        for name, stamp in last_analysed(items).items():
            if stamp is not None:
                age = (now - stamp).total_seconds()
                self.worst[name] = max(self.worst.get(name, 0.0), age)

    def maximum(self) -> tuple[str, float]:
        name = max(self.worst, key=lambda key: self.worst[key])
        return name, self.worst[name]


def wait_until(predicate: Any, timeout: float, what: str, poll: float = 0.5) -> float:
    """Seconds it took; AssertionError naming `what` on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class KillReport:
    """What a run of `kill_one_replica` measured (figures for the test's assertions and the benchmark's table)."""

    experiments: int
    replicas: int
    shards: int
    warmup_s: float
    warmup_refusals: float
    """Writes refused while the experiments were being created (kopf's own first patches racing the first ticks)."""
    owned_before: list[float]
    shards_before: list[int]
    ticks_per_s_before: list[float]
    takeover_s: float
    resumed_s: float
    shards_after: list[int]
    worst_staleness: tuple[str, float]
    worst_steady_staleness: float
    refusals: float
    writes_blocked: float
    lapses: float
    """Shards the survivors dropped because a renewal did not succeed in time (a starved loop or API)."""
    lease_holders: dict[str, str]
    """Holder of each Lease after the takeover (before any rejoin)."""
    rejoin_s: float
    """Seconds from restarting the killed replica until the three share the shards again (-1: not restarted)."""


def survey_items(objects: Any, attempts: int = 5) -> list[dict[str, Any]]:
    """Every experiment. A loaded API server may time a LIST out (504) or drop a multi-megabyte answer midway
    (a broken chunked read), so a few tries, 1, 2, 4, 8 s apart, before giving up: both ended `make bench`'s
    scaling run beside `make test` at load 15. Read from the API server's watch cache (resourceVersion 0): a
    poller's LIST every 2 s should not be a quorum read of etcd, which the benchmark counts as the operator's."""
    for attempt in range(attempts):
        try:
            return objects.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, resource_version="0")[
                "items"
            ]
        except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError) as error:
            transient = not isinstance(error, kubernetes.client.ApiException) or error.status in (429, 500, 503, 504)
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(2.0**attempt)
    raise AssertionError("unreachable")


def kill_one_replica(
    objects: Any,
    leases: Any,
    replicas: list[Replica],
    names: list[str],
    *,
    steady_s: float,
    warmup_timeout_s: float = 150,
    takeover_timeout_s: float = 75,
    rejoin: bool = True,
    quiet_s: float = 10.0,
    progress: Any = print,
) -> KillReport:
    """Warm up until every experiment was analysed, the shards are spread and no write was refused for `quiet_s`;
    measure a steady window; SIGKILL
    the first replica; measure until its shards are held by the survivors and all its experiments were analysed;
    then (`rejoin`) start it again and measure until it holds its share. Refusals count until the very end.

    `objects` is a CustomObjectsApi, `leases` a CoordinationV1Api on the same API server.
    """
    shards = replicas[0].shards
    started = time.monotonic()

    def spread() -> bool:
        held = [held_shards(replica.metrics()) for replica in replicas]
        disjoint = sum(len(h) for h in held) == len(set().union(*held)) == shards
        analysed = all(stamp is not None for stamp in last_analysed(survey_items(objects)).values())
        return disjoint and all(held) and analysed and len(last_analysed(survey_items(objects))) == len(names)

    wait_until(spread, warmup_timeout_s, "every experiment analysed and the shards spread over the replicas", 1.0)
    # Creation is not steady state: every replica's kopf patches each new object once (finalizer, last-handled
    # configuration), and those patches race with the first ticks' guarded status writes. Steady state starts
    # once no write has been refused for `quiet_s`; the refusals until then are reported apart.
    quiet = {"since": time.monotonic(), "count": -1.0}

    def quiet_for() -> bool:
        count = sum(total(replica.metrics(), "mlrollouts_write_conflicts_total") for replica in replicas)
        if count != quiet["count"]:
            quiet.update(since=time.monotonic(), count=count)
        return time.monotonic() - quiet["since"] >= quiet_s

    wait_until(quiet_for, warmup_timeout_s, f"{quiet_s:g}s without a refused write after creation", 1.0)
    warmup_refusals = quiet["count"]
    warmup_s = time.monotonic() - started
    progress(f"warm: {warmup_s:.0f}s")
    watch = StalenessWatch()
    before = [replica.metrics(strict=True) for replica in replicas]
    window_start = time.monotonic()
    while time.monotonic() - window_start < steady_s:
        watch.sample(survey_items(objects))
        time.sleep(1.0)
    worst_steady = watch.maximum()[1]
    steady = [replica.metrics(strict=True) for replica in replicas]
    elapsed = time.monotonic() - window_start
    ticks_per_s = [
        (
            total(after, "mlrollouts_reconcile_duration_seconds_count")
            - total(b, "mlrollouts_reconcile_duration_seconds_count")
        )
        / elapsed
        for b, after in zip(before, steady, strict=True)
    ]
    victim, survivors = replicas[0], replicas[1:]
    victim_last = victim.metrics(strict=True)
    victim_shards = held_shards(victim_last)
    victim.kill()
    killed_at = datetime.now(UTC)
    killed = time.monotonic()
    progress(f"killed {victim.identity} holding shards {sorted(victim_shards)}")
    mine = [name for name in names if _shard(name, shards) in victim_shards]
    takeover_s = resumed_s = -1.0
    while time.monotonic() - killed < takeover_timeout_s:
        items = survey_items(objects)
        watch.sample(items)
        if takeover_s < 0:
            held = [held_shards(replica.metrics()) for replica in survivors]
            if sum(len(h) for h in held) == len(set().union(*held)) == shards:
                takeover_s = time.monotonic() - killed
        stamps = last_analysed(items)
        if resumed_s < 0 and all((stamps.get(name) or killed_at) > killed_at for name in mine):
            resumed_s = time.monotonic() - killed
        if takeover_s >= 0 and resumed_s >= 0:
            break
        time.sleep(0.5)
    if resumed_s < 0:
        stamps = last_analysed(survey_items(objects))
        waiting = [name for name in mine if (stamps.get(name) or killed_at) <= killed_at]
        statuses = {
            item["metadata"]["name"]: {k: (item.get("status") or {}).get(k) for k in ("phase", "reason", "message")}
            for item in survey_items(objects)
            if item["metadata"]["name"] in waiting[:5]
        }
        raise AssertionError(f"{len(waiting)} experiments of the killed replica not analysed since: {statuses}")
    for _ in range(5):  # a few more polls after the takeover: nothing else goes stale
        watch.sample(survey_items(objects))
        time.sleep(1.0)
    after = [replica.metrics() for replica in survivors]
    holders = {
        lease.metadata.name: lease.spec.holder_identity or "" for lease in leases.list_namespaced_lease("default").items
    }
    rejoin_s = -1.0
    if rejoin:  # the killed replica comes back (same identity, as a StatefulSet pod would): it gets its share again
        victim.start()

        def shared_again() -> bool:
            watch.sample(survey_items(objects))
            held = [held_shards(replica.metrics()) for replica in replicas]
            return all(held) and sum(len(h) for h in held) == len(set().union(*held)) == shards

        rejoin_s = wait_until(shared_again, takeover_timeout_s, "the restarted replica to hold its share", 0.5)
        progress(f"{victim.identity} back with a share after {rejoin_s:.1f}s")
        for _ in range(3):
            watch.sample(survey_items(objects))
            time.sleep(1.0)
    final = [replica.metrics(strict=True) for replica in survivors]
    refusals = total(victim_last, "mlrollouts_write_conflicts_total") - total(
        before[0], "mlrollouts_write_conflicts_total"
    )
    refusals += sum(
        total(a, "mlrollouts_write_conflicts_total") - total(b, "mlrollouts_write_conflicts_total")
        for b, a in zip(before[1:], final, strict=True)
    )
    if rejoin:  # the restarted process counts from zero
        refusals += total(victim.metrics(strict=True), "mlrollouts_write_conflicts_total")
    lapses = sum(
        total(a, "mlrollouts_shard_lapses_total") - total(b, "mlrollouts_shard_lapses_total")
        for b, a in zip(before[1:], final, strict=True)
    )
    blocked = sum(
        total(a, "mlrollouts_shard_writes_blocked_total") - total(b, "mlrollouts_shard_writes_blocked_total")
        for b, a in zip(before[1:], final, strict=True)
    )
    return KillReport(
        experiments=len(names),
        replicas=len(replicas),
        shards=shards,
        warmup_s=warmup_s,
        warmup_refusals=warmup_refusals,
        owned_before=[total(m, "mlrollouts_experiments_owned") for m in steady],
        shards_before=[len(held_shards(m)) for m in steady],
        ticks_per_s_before=ticks_per_s,
        takeover_s=takeover_s,
        resumed_s=resumed_s,
        shards_after=[len(held_shards(m)) for m in after],
        worst_staleness=watch.maximum(),
        worst_steady_staleness=worst_steady,
        refusals=refusals,
        writes_blocked=blocked,
        lapses=lapses,
        lease_holders=holders,
        rejoin_s=rejoin_s,
    )


def _shard(name: str, shards: int) -> int:
    from mlrollouts.controller.leases import shard_of

    return shard_of("default", name, shards)
