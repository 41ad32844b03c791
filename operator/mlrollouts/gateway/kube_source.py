"""The split from the ModelExperiment in the cluster: list once, then watch, with the official kubernetes client.

The client does what a hand-written GET could not: client certificates, exec credential plugins (EKS, GKE,
AKS logins), token files, and the pod's rotating service-account token (`load_incluster_config`). One
list gives the object and a resourceVersion; a watch from there delivers each change as it is written (one
request per WATCH_SECONDS instead of one GET per second). A 410 Gone (the version left etcd's window, e.g.
after an API server restart) re-lists; any other failure backs off from 0.5 s to 30 s and is reported as a
SplitError, so `follow` keeps serving the last known weights until the API answers again.

The sync client runs in one daemon thread that hands results to the event loop; nothing blocks the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kubernetes
import urllib3

from mlrollouts.gateway.config import GatewayConfig
from mlrollouts.gateway.split import SplitError, SplitState, parse_experiment
from mlrollouts.gateway.split_source import FileSplitSource, SplitSource

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "mlrollouts.dev", "v1alpha1", "modelexperiments"
WATCH_SECONDS = 300  # the server closes each watch after this; the next one resumes from the last version
CONNECT_TIMEOUT = 10.0
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
CLOSE_ATTEMPTS = 50  # x 0.1 s


def client_configuration(kubeconfig: Path | None) -> kubernetes.client.Configuration:
    """A kubeconfig's current context (as kubectl reads it) or, without one, the pod's service account."""
    configuration = kubernetes.client.Configuration()
    try:
        if kubeconfig is not None:
            kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        else:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException as error:
        hint = "" if kubeconfig is not None else "; outside a pod give --kubeconfig or --split-file"
        raise SplitError(f"cannot load Kubernetes credentials: {error}{hint}") from error
    except (OSError, ValueError) as error:  # unreadable file, malformed YAML/base64
        raise SplitError(f"cannot read kubeconfig {kubeconfig}: {error}") from error
    return configuration


class WatchSplitSource:
    """Follows one ModelExperiment's status.weights and status.phase; `poll` waits for the next change."""

    interval = 0.0  # poll() itself waits for the next event

    def __init__(
        self,
        configuration: kubernetes.client.Configuration,
        namespace: str,
        experiment: str,
        variants: Sequence[str],
        champion: str,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self.namespace, self.experiment = namespace, experiment
        self.variants, self.champion = tuple(variants), champion
        self.watch_seconds = watch_seconds
        self.server = configuration.host
        self.requests = {"list": 0, "watch": 0}  # how often the API server was asked (for the figures)
        self._api = kubernetes.client.ApiClient(configuration)
        self._custom = kubernetes.client.CustomObjectsApi(self._api)
        self._stop = threading.Event()
        self._watch: kubernetes.watch.Watch | None = None
        self._thread: threading.Thread | None = None
        self._queue: asyncio.Queue[SplitState | SplitError] | None = None
        self._last: SplitState | None = None

    async def poll(self) -> SplitState | None:
        """The next new split (None when the object changed but its split did not); raises SplitError."""
        if self._thread is None:
            self._start(asyncio.get_running_loop())
        assert self._queue is not None
        item = await self._queue.get()
        if isinstance(item, SplitError):
            raise item
        if item == self._last:
            return None
        self._last = item
        return item

    async def close(self) -> None:
        """Stop the thread: the open watch is shut down (retried, as a watch may be starting just now)."""
        self._stop.set()
        for _ in range(CLOSE_ATTEMPTS):
            if self._thread is None or not self._thread.is_alive():
                break
            self._interrupt()
            await asyncio.to_thread(self._thread.join, 0.1)
        self._api.close()

    def _interrupt(self) -> None:
        watch = self._watch
        if watch is None:
            return
        watch.stop()
        response = getattr(watch, "_resp", None)  # the open stream the thread is reading
        with contextlib.suppress(Exception):
            response.shutdown()  # type: ignore[union-attr]

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._queue = asyncio.Queue()
        queue = self._queue

        def emit(item: SplitState | SplitError) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: we are shutting down
                loop.call_soon_threadsafe(queue.put_nowait, item)

        self._thread = threading.Thread(target=self._run, args=(emit,), name="split-watch", daemon=True)
        self._thread.start()

    def _run(self, emit: Any) -> None:
        version: str | None = None
        failures = 0
        what = f"ModelExperiment {self.namespace}/{self.experiment}"
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list(emit)
                version = self._follow(version, emit)
                failures = 0
            except kubernetes.client.ApiException as error:
                if error.status == 410:  # too old to resume: list again, now
                    log.info("split watch expired, listing again experiment=%s", what)
                    version = None
                    continue
                emit(SplitError(f"watching {what} failed: HTTP {error.status} {error.reason}"))
                failures += 1
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
                if self._stop.is_set():
                    return
                emit(SplitError(f"cannot reach the API server at {self.server}: {error!r}"))
                failures += 1
            if failures:
                self._stop.wait(BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS)) - 1])

    def _selector(self) -> str:
        return f"metadata.name={self.experiment}"

    def _list(self, emit: Any) -> str:
        self.requests["list"] += 1
        listing = self._custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            field_selector=self._selector(),
            _request_timeout=(CONNECT_TIMEOUT, 30.0),
        )
        items = listing.get("items") or []
        self._emit_object(items[0] if items else None, emit)
        return str(listing["metadata"]["resourceVersion"])

    def _follow(self, version: str, emit: Any) -> str:
        """One watch request from `version` until the server ends it; returns the last version seen."""
        self.requests["watch"] += 1
        self._watch = kubernetes.watch.Watch()
        for event in self._watch.stream(
            self._custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            field_selector=self._selector(),
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_seconds,
            _request_timeout=(CONNECT_TIMEOUT, self.watch_seconds + 30.0),
        ):
            obj = event["raw_object"]
            version = str(obj["metadata"]["resourceVersion"])
            if event["type"] != "BOOKMARK":
                self._emit_object(None if event["type"] == "DELETED" else obj, emit)
        return version

    def _emit_object(self, document: dict[str, Any] | None, emit: Any) -> None:
        if document is None:
            emit(SplitError(f"ModelExperiment {self.namespace}/{self.experiment} not found (or deleted)"))
            return
        try:
            emit(parse_experiment(document, self.variants, self.champion))
        except SplitError as error:
            emit(error)


def default_source(config: GatewayConfig) -> SplitSource:
    """The split file when --split-file is given, else the experiment watched through the API server."""
    variants = tuple(config.upstreams)
    if config.split_file is not None:
        source = FileSplitSource(config.split_file, variants)
        if config.split_poll_seconds is not None:
            source.interval = config.split_poll_seconds
        return source
    access = client_configuration(config.kubeconfig)
    return WatchSplitSource(access, config.namespace, config.experiment, variants, config.champion_name)
