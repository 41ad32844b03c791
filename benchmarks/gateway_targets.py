"""The processes `bench_gateway` measures: a model server, the gateway in front of it, and nginx doing the
same sticky split with `split_clients`; plus wrk, the compiled load generator that drives them."""

from __future__ import annotations

import contextlib
import gc
import getpass
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from mlrollouts.localstack import ports

TIMEOUT_SECONDS = 10

# wrk calls `request` per request (a new user id each time, as real traffic) and `done` once: exact
# percentiles from its HdrHistogram, in microseconds, and the counts.
WRK_SCRIPT = """
local counter = 0
request = function()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json", ["x-user-id"] = "user-" .. counter}
  return wrk.format("POST", "/predict", headers, '{"x": ' .. counter .. '}')
end
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", latency:percentile(50), latency:percentile(99),
    summary.requests, summary.duration, errors.connect + errors.read + errors.write + errors.status, errors.timeout))
end
"""


# The two models the gateway fronts. "echo" answers at once: what any proxy costs shows in full. "mlp" does
# ~1 ms of CPU per prediction, as a small real model does: a 3-layer tanh MLP, 384 wide, float64, scoring
# 32 candidate rows per request with numpy on one BLAS thread (inline, so one request at a time, as a
# CPU-bound model in one uvicorn worker serves).
MODEL_PROFILES = {
    "echo": "answers {prediction: 0.42} at once",
    "mlp": "3-layer tanh MLP (384 wide, 32 rows per request, numpy on one BLAS thread), ~1 ms of CPU",
}
MLP_WIDTH, MLP_ROWS, MLP_LAYERS = 384, 32, 3


def model_app(profile: str = "echo"):  # runs in the model-server subprocess
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    score = mlp_scorer() if profile == "mlp" else (lambda _document: 0.42)

    async def predict(request):
        document = json.loads(await request.body() or b"{}")
        return JSONResponse({"prediction": score(document)}, headers={"x-model-version": f"bench-{profile}-1"})

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


def mlp_scorer():
    import numpy as np

    rng = np.random.default_rng(0)
    layers = [rng.standard_normal((MLP_WIDTH, MLP_WIDTH)) / np.sqrt(MLP_WIDTH) for _ in range(MLP_LAYERS)]
    rows = rng.standard_normal((MLP_ROWS, MLP_WIDTH))

    def score(document) -> float:
        x = document.get("x", 0) if isinstance(document, dict) else 0
        hidden = rows + float(x) * 1e-6  # the input moves the answer: nothing to cache
        for weights in layers:
            hidden = np.tanh(hidden @ weights)
        return float(1 / (1 + np.exp(-hidden.mean())))

    return score


free_port = ports.free_port  # a candidate: `process` checks that the child itself got the port


def binary(name: str) -> str | None:
    """`name` on PATH or in /usr/sbin (Debian's nginx lives there, often off a non-root PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its children (nginx's worker), from /proc: unlike wall-clock latency,
    it hardly moves when other jobs load the machine."""
    pids = [pid]
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        pids += [int(child) for child in children.read_text().split()]
    ticks = 0
    for each in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def runqueue_seconds(pid: int) -> float:
    """Time `pid`'s threads and children waited for a CPU while runnable (/proc schedstat): the share of
    a latency that is the machine's scheduling, not the process's own work."""
    pids = [pid]
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        pids += [int(child) for child in children.read_text().split()]
    waited = 0
    for each in pids:
        for stat in Path(f"/proc/{each}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                waited += int(stat.read_text().split()[1])
    return waited / 1e9


@contextlib.contextmanager
def process(command: list[str], ready_url: str) -> Iterator[int]:
    environment = os.environ | ONE_THREAD  # a model's CPU is its process's: no BLAS threads on the side
    port = httpx.URL(ready_url).port or 80
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        deadline = time.monotonic() + 20
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited: {child.communicate()[1][-2000:]}")
            with contextlib.suppress(httpx.TransportError):  # ours, not whoever took the port before the child bound it
                if ports.owns_listener(child.pid, port) and httpx.get(ready_url, timeout=1).status_code < 500:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_url} not ready in 20 s")
            time.sleep(0.1)
        yield child.pid
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def model_command(port: int, profile: str = "echo") -> list[str]:
    return [sys.executable, "-m", "benchmarks.gateway_targets", str(port), profile]


ONE_THREAD = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def gateway_command(port: int, metrics_port: int, model: str, split_file: Path) -> list[str]:
    entry = "import sys; from mlrollouts.cli.main import main; sys.exit(main())"
    command = [sys.executable, "-c", entry, "gateway", "--port", str(port), "--log-level", "warning"]
    command += ["--metrics-port", str(metrics_port), "--experiment", "bench"]
    command += ["--upstream", f"a={model}", "--upstream", f"b={model}", "--split-file", str(split_file)]
    return command


def nginx_conf(prefix: Path, splits: dict[str, tuple[int, int]], ceiling_port: int) -> str:
    """One worker (the gateway is one process), keep-alive pools to the model, and the same 50/50 sticky
    split on x-user-id; `splits` maps a name to (listen port, model port), one split per model profile.
    `ceiling_port` answers from nginx itself: what wrk can drive at most."""
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""  # as root, workers would become nobody
    temps = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    blocks = []
    for name, (port, model_port) in splits.items():
        blocks.append(f"""
    split_clients "${{http_x_user_id}}" ${name}_variant {{ 50% {name}_a; * {name}_b; }}
    upstream {name}_a {{ server 127.0.0.1:{model_port}; keepalive 64; }}
    upstream {name}_b {{ server 127.0.0.1:{model_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location = /ready {{ return 200 "ok"; }}
        location /predict {{
            proxy_pass http://${name}_variant;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header x-mlrollouts-variant ${name}_variant;
        }}
    }}""")
    return f"""{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 10000000;  # the default 1000 would close the latency client's connection
{temps}
{"".join(blocks)}
    server {{
        listen 127.0.0.1:{ceiling_port};
        location / {{ default_type application/json; return 200 '{{"prediction":0.42}}'; }}
    }}
}}
"""


def nginx_command(nginx: str, prefix: Path) -> list[str]:
    return [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]


@dataclass(frozen=True)
class WrkRun:
    p50_ms: float
    p99_ms: float
    rate: float  # req/s
    requests: int
    errors: int  # refused, reset or non-2xx/3xx: the target is broken
    timeouts: int  # no answer within TIMEOUT_SECONDS: the target is overloaded
    client_cpu_us: float  # wrk's own CPU per request: the load generator's share of the machine


def wrk(wrk_binary: str, script: Path, url: str, connections: int, seconds: float) -> WrkRun:
    base = url.rsplit("/predict", 1)[0]
    command = [wrk_binary, "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={TIMEOUT_SECONDS}s"]
    command += ["-s", str(script), base]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    line = next((line for line in output.splitlines() if line.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {output[-500:]}")
    p50, p99, requests, duration, errors, timeouts = (int(part) for part in line.split()[1:])
    rate = requests / (duration / 1e6)
    return WrkRun(p50 / 1000, p99 / 1000, rate, requests, errors, timeouts, client_cpu / max(requests, 1) * 1e6)


class Sequential:
    """One kept-alive connection, one POST /predict at a time (a new x-user-id each), its latency timed
    around the socket calls only: a load generator whose every request is a sample."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = f"{parts.hostname}:{parts.port}".encode()
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT_SECONDS)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, counter: int) -> int:
        """Latency in ns of one request; raises on anything but a 200 with a Content-Length."""
        body = b'{"x": %d}' % counter
        request = (
            b"POST /predict HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\nx-user-id: user-%d\r\n"
            b"content-length: %d\r\n\r\n%s" % (self.host, counter, len(body), body)
        )
        started = time.perf_counter_ns()
        self.sock.sendall(request)
        data = self.sock.recv(65536)
        while b"\r\n\r\n" not in data:
            data += self._more()
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next((int(line[15:]) for line in lines if line[:15].lower() == b"content-length:"), None)
        if length is None or not lines[0].startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{self.host.decode()}: unexpected answer {head[:200]!r}")
        while len(rest) < length:
            rest += self._more()
        elapsed = time.perf_counter_ns() - started
        return elapsed

    def _more(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"{self.host.decode()} closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


def interleaved(urls: list[str], seconds: float, first: int = 0) -> list[list[float]]:
    """Latencies (ms) per url, one request to each in turn, the starting url rotating every turn, for
    `seconds`: every target sees the same moments of the machine, so a stall of another job lands on all
    of them alike and differences of percentiles compare like with like. The client's GC is off while
    it times."""
    clients = [Sequential(url) for url in urls]
    samples: list[list[float]] = [[] for _ in urls]
    counter, turn = first, 0
    collecting = gc.isenabled()
    gc.disable()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for step in range(len(clients)):
                index = (turn + step) % len(clients)
                counter += 1
                samples[index].append(clients[index].post(counter) / 1e6)
            turn += 1
    finally:
        if collecting:
            gc.enable()
        for client in clients:
            client.close()
    return samples


if __name__ == "__main__":
    import uvicorn

    profile = sys.argv[2] if len(sys.argv) > 2 else "echo"
    uvicorn.run(model_app(profile), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
