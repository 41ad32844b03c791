"""A stand-in model server with a known latency and error rate, so a demo's outcome is predictable.

`python -m mlrollouts.demo.models --port P --name churn-v3 --latency 0.02` serves
POST /predict -> {"prediction": score, "model": name} with an `x-model-version` header. The score is a
deterministic function of (model, user_id), so a shadow comparison is reproducible. Latency is lognormal
around the median `--latency` (p95 = median x exp(1.645 sigma)), which gives a latency histogram whose p95
the guardrails can read. The business outcome (retention) is not decided here: the traffic generator draws
it, as the users of a real model would.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import math
import random
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)
P95_Z = 1.6448536269514722


@dataclass(frozen=True)
class ModelBehaviour:
    name: str
    latency: float = 0.02
    """Median latency in seconds."""
    sigma: float = 0.25
    """Spread of the lognormal latency; p95 = latency x exp(1.645 sigma)."""
    error_rate: float = 0.0
    """Fraction of requests answered with HTTP 500."""

    @property
    def p95_latency(self) -> float:
        return self.latency * math.exp(P95_Z * self.sigma)


def score(model: str, user_id: str) -> float:
    """A stable pseudo-probability in [0, 1) per model and user."""
    digest = hashlib.sha256(f"{model}/{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def build_app(behaviour: ModelBehaviour, seed: int | None = None) -> Starlette:
    rng = random.Random(seed)

    async def predict(request: Request) -> Response:
        try:
            document = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"error": "body must be JSON"}, status_code=400)
        user_id = str(document.get("user_id", "")) if isinstance(document, dict) else ""
        await asyncio.sleep(behaviour.latency * math.exp(rng.gauss(0.0, behaviour.sigma)))
        headers = {"x-model-version": behaviour.name}
        if rng.random() < behaviour.error_rate:
            return JSONResponse({"error": "simulated model failure"}, status_code=500, headers=headers)
        body = {"prediction": round(score(behaviour.name, user_id), 6), "model": behaviour.name}
        return JSONResponse(body, headers=headers)

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/healthz", healthz)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlrollouts.demo.models", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", required=True, help="Model version, returned in x-model-version.")
    parser.add_argument("--latency", type=float, default=0.02, help="Median latency in seconds.")
    parser.add_argument("--sigma", type=float, default=0.25, help="Lognormal spread of the latency.")
    parser.add_argument("--error-rate", type=float, default=0.0, help="Fraction answered with HTTP 500.")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.latency < 0 or args.sigma < 0 or not 0 <= args.error_rate <= 1:
        parser.error("--latency and --sigma must be >= 0 and --error-rate within [0, 1]")
    behaviour = ModelBehaviour(args.name, args.latency, args.sigma, args.error_rate)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log.info("model server starting name=%s port=%s p95=%.3f", args.name, args.port, behaviour.p95_latency)
    uvicorn.run(build_app(behaviour, args.seed), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
