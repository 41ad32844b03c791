"""Fake model servers and a running gateway, all real uvicorn servers on loopback ports."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mlrollouts.gateway import GatewayConfig, serve_gateway_in_thread, serve_in_thread
from mlrollouts.gateway.tokens import KeyRing

SIGNING_KEY = "k" * 40


@dataclass
class FakeModel:
    """A model server whose behaviour a test can change while it runs."""

    name: str
    score: float = 0.25
    delay_seconds: float = 0.0
    status_code: int = 200
    received: list[dict] = field(default_factory=list)
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    """Sent with every answer, repeats included (e.g. two Set-Cookie)."""

    def app(self) -> Starlette:
        async def predict(request: Request) -> JSONResponse:
            body = await request.body()
            self.received.append(
                {
                    "path": request.url.path,
                    "body": body,
                    "headers": dict(request.headers),
                    "raw_headers": list(request.headers.raw),
                    "raw_path": request.scope.get("raw_path"),
                    "client_port": request.client.port if request.client else None,
                }
            )
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
            response = JSONResponse(
                {"prediction": self.score, "model": self.name},
                status_code=self.status_code,
                headers={"x-model-version": f"{self.name}-build7"},
            )
            for name, value in self.response_headers:
                response.headers.append(name, value)
            return response

        return Starlette(routes=[Route("/{path:path}", predict, methods=["GET", "POST"])])


@pytest.fixture
def models() -> Iterator[dict[str, tuple[FakeModel, str]]]:
    champion, challenger = FakeModel("churn-v2", score=0.25), FakeModel("churn-v3", score=0.75)
    with serve_in_thread(champion.app()) as champion_url, serve_in_thread(challenger.app()) as challenger_url:
        yield {"churn-v2": (champion, champion_url), "churn-v3": (challenger, challenger_url)}


@dataclass
class RunningGateway:
    url: str
    metrics_url: str
    split_file: Path
    client: httpx.Client

    def write_split(self, document: dict) -> None:
        temporary = self.split_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(document))
        temporary.replace(self.split_file)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self.client.get(f"{self.metrics_url}/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def predict(self, user: str | None = None, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if user is not None:
            headers["x-user-id"] = user
        return self.client.post(f"{self.url}/predict", json=kwargs.pop("json", {"x": 1}), headers=headers, **kwargs)

    def feedback(self, token: str | None, **fields: object) -> httpx.Response:
        """POST /feedback with `token` (the x-mlrollouts-token of a response) and e.g. reward=1."""
        body = fields if token is None else {"token": token} | fields
        return self.client.post(f"{self.url}/feedback", json=body)


GatewayFactory = Callable[..., RunningGateway]


@pytest.fixture
def start_gateway(models, tmp_path: Path) -> Iterator[GatewayFactory]:
    """Call with a split document and GatewayConfig overrides; stops everything at teardown."""
    stack: list = []

    def start(split: dict | None = None, **overrides) -> RunningGateway:
        split_file = tmp_path / "split.json"
        split_file.write_text(json.dumps(split or {"churn-v2": 90, "churn-v3": 10}))
        settings = {
            "experiment": "churn-exp",
            "upstreams": {name: url for name, (_, url) in models.items()},
            "split_file": split_file,
            "timeout_seconds": 5.0,
            "seed": 7,
        } | overrides
        config = GatewayConfig(**settings).validate()
        server = serve_gateway_in_thread(config, keys=KeyRing(env_value=SIGNING_KEY))
        urls = server.__enter__()
        stack.append(server)
        client = httpx.Client(timeout=10.0)
        stack.append(client)
        gateway = RunningGateway(urls.public, urls.metrics, split_file, client)
        for _ in range(200):
            if client.get(f"{gateway.url}/readyz").status_code == 200:
                return gateway
            time.sleep(0.01)
        raise AssertionError("gateway never became ready")

    yield start
    for item in reversed(stack):
        if isinstance(item, httpx.Client):
            item.close()
        else:
            item.__exit__(None, None, None)
