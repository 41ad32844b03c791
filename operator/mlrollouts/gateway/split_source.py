"""Where the split comes from: a JSON file (standalone) or the ModelExperiment's status (in a cluster).

Both are polled. A source returns a new SplitState when something changed, None when nothing did, and
raises SplitError for a bad split; `follow` logs the error and keeps the last good split applied.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import yaml

from mlrollouts.gateway.split import SplitError, SplitState, parse_experiment, parse_split_file

log = logging.getLogger(__name__)

FILE_POLL_SECONDS = 0.25
API_POLL_SECONDS = 1.0
GROUP_PATH = "/apis/mlrollouts.dev/v1alpha1"


class SplitSource(Protocol):
    interval: float

    async def poll(self) -> SplitState | None: ...

    async def close(self) -> None: ...


class FileSplitSource:
    """Re-reads the file when its mtime or size changes."""

    def __init__(self, path: Path, variants: Sequence[str], interval: float = FILE_POLL_SECONDS) -> None:
        self.path = path
        self.variants = tuple(variants)
        self.interval = interval
        self._seen: tuple[int, int] | None = None

    async def poll(self) -> SplitState | None:
        try:
            stat = self.path.stat()
        except OSError as error:
            raise SplitError(f"cannot read split file {self.path}: {error.strerror}") from error
        signature = (stat.st_mtime_ns, stat.st_size)
        if signature == self._seen:
            return None
        self._seen = signature
        return parse_split_file(self.path.read_text(encoding="utf-8"), self.variants)

    async def close(self) -> None:
        return None


SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class ClusterAccess:
    server: str
    token: str | None
    verify: ssl.SSLContext | bool
    token_file: Path | None = None  # re-read on every poll: projected tokens rotate

    def bearer(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text(encoding="utf-8").strip()
        return self.token


def in_cluster_access(environ: Mapping[str, str] = os.environ, account: Path = SERVICE_ACCOUNT) -> ClusterAccess:
    """The pod's service account, as every in-cluster client finds it."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise SplitError("not running in a pod (KUBERNETES_SERVICE_HOST unset); give --kubeconfig or --split-file")
    host = f"[{host}]" if ":" in host else host
    ca = account / "ca.crt"
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=os.fspath(ca)) if ca.is_file() else True
    return ClusterAccess(f"https://{host}:{port}", None, verify, token_file=account / "token")


def load_kubeconfig(path: Path) -> ClusterAccess:
    """Server URL, bearer token and TLS trust of the current context; enough for a GET."""
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SplitError(f"cannot read kubeconfig {path}: {error}") from error

    def named(section: str, name: str | None) -> dict:
        for entry in config.get(section) or []:
            if entry.get("name") == name:
                return entry.get(section[:-1]) or {}
        raise SplitError(f"kubeconfig {path} has no {section[:-1]} named {name!r}")

    context = named("contexts", config.get("current-context"))
    cluster = named("clusters", context.get("cluster"))
    user = named("users", context.get("user")) if context.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise SplitError(f"kubeconfig {path}: cluster {context.get('cluster')!r} has no server URL")
    token = user.get("token")
    token_file = Path(user["tokenFile"]) if not token and user.get("tokenFile") else None
    verify: ssl.SSLContext | bool = True
    if cluster.get("insecure-skip-tls-verify"):
        verify = False
    elif cluster.get("certificate-authority-data"):
        verify = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode("ascii")
        )
    elif cluster.get("certificate-authority"):
        verify = ssl.create_default_context(cafile=os.fspath(cluster["certificate-authority"]))
    return ClusterAccess(server=server.rstrip("/"), token=token, verify=verify, token_file=token_file)


class ApiSplitSource:
    """Polls GET .../namespaces/NS/modelexperiments/NAME and follows status.weights and status.phase."""

    def __init__(
        self,
        access: ClusterAccess,
        namespace: str,
        experiment: str,
        variants: Sequence[str],
        champion: str,
        interval: float = API_POLL_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.access = access
        headers = {"Accept": "application/json"}
        self.url = f"{GROUP_PATH}/namespaces/{namespace}/modelexperiments/{experiment}"
        self.client = httpx.AsyncClient(
            base_url=access.server, headers=headers, verify=access.verify, timeout=5.0, transport=transport
        )
        self.variants = tuple(variants)
        self.champion = champion
        self.interval = interval
        self._last: SplitState | None = None

    async def poll(self) -> SplitState | None:
        try:
            token = self.access.bearer()
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = await self.client.get(self.url, headers=headers)
        except OSError as error:
            raise SplitError(f"cannot read the service account token: {error}") from error
        except httpx.HTTPError as error:
            raise SplitError(f"cannot reach the API server at {self.client.base_url}: {error!r}") from error
        if response.status_code != 200:
            raise SplitError(f"GET {self.url} answered {response.status_code}: {response.text[:200]}")
        try:
            document = response.json()
        except ValueError as error:
            raise SplitError(f"GET {self.url} did not return JSON") from error
        state = parse_experiment(document, self.variants, self.champion)
        if state == self._last:
            return None
        self._last = state
        return state

    async def close(self) -> None:
        await self.client.aclose()


async def follow(source: SplitSource, apply: Callable[[SplitState], None]) -> None:
    """Poll forever; apply each new good split, warn once per distinct problem and keep the last good one."""
    last_problem: str | None = None
    while True:
        try:
            state = await source.poll()
        except SplitError as error:
            if str(error) != last_problem:
                log.warning("split rejected, keeping the last good split: problem=%r", str(error))
                last_problem = str(error)
        else:
            last_problem = None
            if state is not None:
                apply(state)
        await asyncio.sleep(source.interval)
