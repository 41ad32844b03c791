"""Simulated users: POST /predict through the gateway at a bounded rate, then report each outcome.

Each request comes from a user drawn from a large population (so the gateway's sticky split still gives
per-request ratios close to the weights) and, once answered, the user "retains" with the true rate of the
variant that served it (read from the `x-mlrollouts-variant` header) and that outcome is sent to
POST /feedback with the response's signed `x-mlrollouts-token` (the gateway counts nothing without it).
The truth lives here, so the demo knows what the experiment should find.

`python -m mlrollouts.demo.traffic --gateway URL --rate 150 --retention churn-v2=0.72 ...`
writes running totals to `--stats-file` every second (JSON, replaced atomically).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrafficPlan:
    gateway_url: str
    retention: dict[str, float]
    """True retention rate per variant: the probability that a served user sends reward 1."""
    rate: float = 150.0
    """Requests per second, at most."""
    users: int = 1_000_000
    concurrency: int = 64
    seed: int | None = None


@dataclass
class TrafficStats:
    sent: int = 0
    answered: int = 0
    failed: int = 0
    unready: int = 0
    """503 answers before the gateway has a split (the experiment is not applied yet)."""
    skipped: int = 0
    """Ticks with every worker busy: the rate bound was kept by not sending."""
    served: Counter[str] = field(default_factory=Counter)
    retained: Counter[str] = field(default_factory=Counter)
    feedback_failed: int = 0
    feedback_errors: Counter[str] = field(default_factory=Counter)
    """Why feedback was not counted: the gateway's status code, or the client error's class."""
    started: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "failed": self.failed,
            "unready": self.unready,
            "skipped": self.skipped,
            "served": dict(self.served),
            "retained": dict(self.retained),
            "feedback_failed": self.feedback_failed,
            "feedback_errors": dict(self.feedback_errors),
            "elapsed": round(time.time() - self.started, 1),
        }


def parse_retention(values: list[str]) -> dict[str, float]:
    rates: dict[str, float] = {}
    for value in values:
        name, _, rate = value.partition("=")
        try:
            rates[name] = float(rate)
        except ValueError:
            raise ValueError(f"--retention {value!r} must look like NAME=RATE, e.g. churn-v3=0.78") from None
        if not name or not 0.0 <= rates[name] <= 1.0:
            raise ValueError(f"--retention {value!r}: the rate must be within [0, 1] and the name non-empty")
    return rates


async def one_user(client: httpx.AsyncClient, plan: TrafficPlan, rng: random.Random, stats: TrafficStats) -> None:
    user = f"user-{rng.randrange(plan.users):07d}"
    stats.sent += 1
    try:
        body = {"user_id": user, "tenure": rng.randrange(60)}
        response = await client.post("/predict", json=body, headers={"x-user-id": user})
    except httpx.HTTPError:
        stats.failed += 1
        return
    variant = response.headers.get("x-mlrollouts-variant")
    token = response.headers.get("x-mlrollouts-token")
    if response.status_code == 503 and variant is None:
        stats.unready += 1
        return
    if response.status_code != 200 or variant is None or token is None:
        stats.failed += 1
        return
    stats.answered += 1
    stats.served[variant] += 1
    reward = 1 if rng.random() < plan.retention.get(variant, 0.0) else 0
    stats.retained[variant] += reward
    try:
        feedback = await client.post("/feedback", json={"token": token, "reward": reward})
        if feedback.status_code != 200:
            stats.feedback_failed += 1
            stats.feedback_errors[str(feedback.status_code)] += 1
    except httpx.HTTPError as error:
        stats.feedback_failed += 1
        stats.feedback_errors[type(error).__name__] += 1


async def generate(
    plan: TrafficPlan,
    stop: asyncio.Event,
    stats: TrafficStats | None = None,
    stats_file: Path | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> TrafficStats:
    """Send until `stop` is set; never more than `plan.rate` per second nor `plan.concurrency` at once."""
    stats = stats or TrafficStats()
    rng = random.Random(plan.seed)
    limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency)
    in_flight: set[asyncio.Task[None]] = set()
    period = 1.0 / plan.rate
    client = httpx.AsyncClient(base_url=plan.gateway_url, timeout=10.0, limits=limits, transport=transport)
    async with client:
        next_send = next_report = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_report and stats_file is not None:
                write_stats(stats_file, stats)
                next_report = now + 1.0
            if now < next_send:
                await asyncio.sleep(min(next_send - now, 0.05))
                continue
            next_send = max(next_send + period, now - 1.0)  # catch up at most one second of backlog
            if len(in_flight) >= plan.concurrency:
                stats.skipped += 1
                continue
            task = asyncio.create_task(one_user(client, plan, rng, stats))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight, timeout=10.0)
    if stats_file is not None:
        write_stats(stats_file, stats)
    return stats


def write_stats(path: Path, stats: TrafficStats) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(stats.as_dict()), encoding="utf-8")
    os.replace(temporary, path)


def read_stats(path: Path) -> dict[str, object]:
    """The generator's last totals, or {} before it wrote any."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


async def _run_until_signalled(plan: TrafficPlan, stats_file: Path | None, duration: float | None) -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    stats = await generate(plan, stop, stats_file=stats_file)
    log.info("traffic stopped %s", " ".join(f"{k}={v}" for k, v in stats.as_dict().items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlrollouts.demo.traffic", description=__doc__)
    parser.add_argument("--gateway", required=True, help="Gateway base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--retention", action="append", default=[], help="NAME=RATE per variant (repeat).")
    parser.add_argument("--rate", type=float, default=150.0, help="Requests per second, at most.")
    parser.add_argument("--users", type=int, default=1_000_000, help="Size of the simulated user population.")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None, help="Stop after this many seconds.")
    parser.add_argument("--stats-file", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        retention = parse_retention(args.retention)
    except ValueError as problem:
        parser.error(str(problem))
    if not retention or args.rate <= 0 or args.users < 1 or args.concurrency < 1:
        parser.error("give --retention per variant, and a positive --rate, --users and --concurrency")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is too many
    plan = TrafficPlan(args.gateway, retention, args.rate, args.users, args.concurrency, args.seed)
    asyncio.run(_run_until_signalled(plan, args.stats_file, args.duration))


if __name__ == "__main__":
    main()
