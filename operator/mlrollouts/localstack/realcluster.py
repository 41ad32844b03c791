"""A real control plane on loopback: etcd and kube-apiserver built from Go modules (`make controlplane`).

What envtest gives Go operators: the real API server with its structural-schema and CEL validation,
server-side field validation, RBAC and ServiceAccount tokens, but no kubelet, scheduler or controller-manager
(Pods and Deployments are stored, never run). Everything lives in one temp folder that stop() removes
together with both processes.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from typing import Any

import httpx

from mlrollouts.localstack import binaries, certs, ports
from mlrollouts.localstack.cleanup import compact_etcd, reset_objects
from mlrollouts.localstack.crdinstall import PROJECT_CRDS, install_crds
from mlrollouts.localstack.kubeconfig import admin_kubeconfig

logger = logging.getLogger(__name__)
REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
PROJECT_CRD = REPO_ROOT / "crds" / "modelexperiments.mlrollouts.dev.yaml"
SCHEMAS = REPO_ROOT / "tests" / "data" / "schemas"
# The ModelExperiment CRD and the routing and monitoring CRDs the operator writes (Istio, Gateway API,
# Prometheus Operator), upstream and unchanged (tests/data/schemas/SOURCES.md).
DEFAULT_CRDS = (
    *PROJECT_CRDS,
    SCHEMAS / "istio-networking.crd.yaml",
    SCHEMAS / "gateway-api-httproutes.crd.yaml",
    SCHEMAS / "prometheus-operator-servicemonitors.crd.yaml",
    SCHEMAS / "prometheus-operator-prometheusrules.crd.yaml",
)
# KServe's InferenceService CRD (provider kserve) on request only (`mlrollouts apiserver --crd PATH`, the KServe
# tests): its 1.9 MB schema made a start 14 s -> 66 s on a loaded 2-core machine.
KSERVE_CRD = SCHEMAS / "kserve-inferenceservices.crd.yaml"
READY_TIMEOUT_S = 180.0  # a cold start on a loaded 2-core machine; typically a few seconds
STOP_TIMEOUT_S = 30.0


class ControlPlaneError(RuntimeError):
    """The control plane did not start; the message ends with the failing process's last log lines."""


free_port = ports.free_port  # kept for importers


def check_port_free(port: int) -> None:
    """Raise OSError when 127.0.0.1:port is taken, before any process starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def _die_with_parent() -> None:
    """Linux: the child is killed if the process that started it dies (e.g. a killed test run). SIGKILL, as
    kube-apiserver given SIGTERM at the same moment as etcd waits for etcd forever; the data is throw-away."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _tail(path: pathlib.Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class RealApiServer:
    """etcd + kube-apiserver on 127.0.0.1; start() / stop() or a `with` block."""

    backend = "real"

    def __init__(
        self,
        port: int = 0,
        kubeconfig_path: str | pathlib.Path | None = None,
        crd_files: Iterable[pathlib.Path] = (),
        builtin_crds: Iterable[pathlib.Path] = DEFAULT_CRDS,
        extra_args: Iterable[str] = (),
    ) -> None:
        """`crd_files` must all be accepted (start() fails otherwise); a refused `builtin_crds` file is kept
        in `rejected_crds` and the server still starts, so that one bad CRD does not take the rest away.
        `extra_args` go to kube-apiserver last (e.g. an audit policy, to count a client's 403s)."""
        self.requested_port = port
        self.kubeconfig = pathlib.Path(kubeconfig_path) if kubeconfig_path else None
        self.crd_files = [pathlib.Path(p) for p in crd_files]
        self.builtin_crds = [pathlib.Path(p) for p in builtin_crds]
        self.extra_args = list(extra_args)
        self.rejected_crds: list[str] = []
        self.workdir: pathlib.Path | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.arguments: dict[str, list[str]] = {}  # each process's command line, to start it again
        self.etcd_url = ""
        self.port = 0
        self.ready_seconds = 0.0  # until /readyz answered ok
        self.startup_seconds = 0.0  # until the CRDs were Established too
        self.certs: certs.ControlPlaneCerts | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> RealApiServer:
        if not binaries.available():
            raise ControlPlaneError(binaries.unavailable_reason())
        if self.requested_port:
            check_port_free(self.requested_port)
        began = time.monotonic()
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="mlrollouts-k8s-"))
        try:
            self._start_until_ready(began + READY_TIMEOUT_S)
            self.ready_seconds = time.monotonic() - began
            self.install_crd_files(self.builtin_crds, rejected=self.rejected_crds)
            self.install_crd_files(self.crd_files)
            if self.kubeconfig is not None:  # last: a script that waits for the file finds the CRDs served
                self.write_kubeconfig(self.kubeconfig)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        logger.info("real apiserver ready url=%s in %.1fs", self.url, self.startup_seconds)
        return self

    def _start_until_ready(self, deadline: float) -> None:
        """etcd and kube-apiserver, started again on new ports when one lost a port picked by free_port to another
        process before binding it (localstack/ports.py); a requested port is never changed."""
        assert self.workdir is not None
        for attempt in range(1, ports.PORT_ATTEMPTS + 1):
            self._start_processes()
            try:
                self._wait_ready(deadline)
                return
            except ControlPlaneError:
                logs = [self.workdir / f"{name}.log" for name in ("etcd", "kube-apiserver")]
                lost = any(ports.lost_port(_tail(log, 30)) for log in logs)
                if self.requested_port or attempt == ports.PORT_ATTEMPTS or not lost:
                    raise
            logger.info("control plane lost a port to another process (attempt %d): starting on new ports", attempt)
            for name in ("kube-apiserver", "etcd"):
                self._terminate(name)
            for log in (log for log in logs if log.exists()):
                log.replace(log.with_suffix(f".attempt-{attempt}.log"))
            shutil.rmtree(self.workdir / "etcd", ignore_errors=True)

    def _spawn(self, name: str, args: list[str]) -> None:
        assert self.workdir is not None
        self.arguments[name] = args
        log = (self.workdir / f"{name}.log").open("ab")
        with log:
            self.processes[name] = subprocess.Popen(
                [str(binaries.path(name)), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                # PDEATHSIG follows the starting *thread*: start() from a thread that outlives the server.
                preexec_fn=_die_with_parent,
            )

    def _start_processes(self) -> None:
        assert self.workdir is not None
        self.certs = certs.generate(self.workdir / "pki")
        client, peer = ports.free_port(), ports.free_port()
        self.port = self.requested_port or ports.free_port()
        etcd_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        self.etcd_url = etcd_url
        self._spawn(
            "etcd",
            [
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",  # throw-away data: no fsync keeps start-up and writes fast
                "--log-level=warn",
            ],
        )
        c = self.certs
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # Loopback cannot be the `kubernetes` Service's endpoint; nothing in-cluster would reach it anyway.
                "--endpoint-reconciler-type=none",
                f"--secure-port={self.port}",
                f"--cert-dir={self.workdir / 'pki'}",
                f"--tls-cert-file={c.serving_cert}",
                f"--tls-private-key-file={c.serving_key}",
                f"--client-ca-file={c.ca_cert}",
                f"--service-account-key-file={c.service_account_pub}",
                f"--service-account-signing-key-file={c.service_account_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                # No controller-manager creates each namespace's `default` ServiceAccount, so this admission
                # plugin would refuse every Pod; envtest disables it for the same reason.
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
                *self.extra_args,
            ],
        )

    def client(self, timeout: float = 10.0) -> httpx.Client:
        """An HTTP client authenticated as the admin (group system:masters)."""
        assert self.certs is not None
        import ssl

        context = ssl.create_default_context(cafile=str(self.certs.ca_cert))
        context.load_cert_chain(str(self.certs.admin_cert), str(self.certs.admin_key))
        return httpx.Client(base_url=self.url, verify=context, timeout=timeout)

    def _wait_ready(self, deadline: float) -> None:
        with self.client(timeout=5.0) as http:
            while True:
                for name, process in self.processes.items():
                    if process.poll() is not None:
                        raise self._failure(f"{name} exited with code {process.returncode}", name)
                with contextlib.suppress(httpx.HTTPError):
                    if http.get("/readyz").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise self._failure(f"/readyz not ok after {READY_TIMEOUT_S:.0f} s", "kube-apiserver")
                time.sleep(0.2)

    def _failure(self, what: str, name: str) -> ControlPlaneError:
        assert self.workdir is not None
        return ControlPlaneError(f"{what}; last lines of its log:\n{_tail(self.workdir / f'{name}.log')}")

    def write_kubeconfig(self, path: str | pathlib.Path) -> pathlib.Path:
        """An admin kubeconfig with the certificates embedded (it outlives nothing: the CA dies with us)."""
        assert self.certs is not None
        import yaml

        target = pathlib.Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(admin_kubeconfig(self.url, self.certs)), encoding="utf-8")
        target.chmod(0o600)
        return target

    def install_crd_files(
        self, files: Iterable[pathlib.Path], rejected: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Create (or replace) the CRDs in the files and wait until each is Established (see install_crds)."""
        with self.client(timeout=30.0) as http:
            return install_crds(http, files, rejected)

    def ensure_namespace(self, name: str) -> dict[str, Any]:
        """Create the namespace unless it exists; returns it as served."""
        with self.client() as http:
            response = http.post("/api/v1/namespaces", json={"metadata": {"name": name}})
            if response.status_code == 409:
                response = http.get(f"/api/v1/namespaces/{name}")
            response.raise_for_status()
            return response.json()

    def reset(self) -> None:
        """Delete every custom object and the namespaced objects tests create, so that one server can serve many
        tests (a start costs seconds): finalizers are dropped first, as no operator may be left to remove them.
        Namespaces stay (without a controller-manager a deleted namespace never leaves Terminating)."""
        with self.client(timeout=30.0) as http:
            reset_objects(http)

    def _terminate(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, *, etcd: bool = False, compact: bool = False) -> None:
        """Stop kube-apiserver (and etcd too, given `etcd`; its data dir is kept) and start it again on the same
        port with the same certificates, as a control-plane upgrade would. `compact` compacts etcd's history
        while kube-apiserver is down, so a client that resumes a watch from its last resourceVersion gets 410
        Gone rather than the events it missed. Returns once /readyz is ok."""
        self._terminate("kube-apiserver")
        if etcd:
            self._terminate("etcd")
            self._spawn("etcd", self.arguments["etcd"])
        if compact and not compact_etcd(self.etcd_url, time.monotonic() + READY_TIMEOUT_S):
            raise self._failure("etcd did not answer a compaction", "etcd")
        self._spawn("kube-apiserver", self.arguments["kube-apiserver"])
        self._wait_ready(time.monotonic() + READY_TIMEOUT_S)

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd, and remove the run's folder; safe to call twice."""
        for name in ("kube-apiserver", "etcd"):
            self._terminate(name)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> RealApiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
