"""The gateway's client to the models: what it sends and what it refuses to do on a user's behalf."""

from __future__ import annotations

import pytest
from test_gateway_isolation import raw_request

pytestmark = pytest.mark.integration


def test_header_values_that_are_not_utf8_reach_the_model_byte_for_byte(start_gateway, models) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    headers = [(b"x-note", b"caf\xe9"), (b"x-user-id", b"u-\xff")]  # latin-1, not UTF-8
    status, _ = raw_request(gateway.url, "/predict", headers, b"{}")
    assert status == 200
    raw = dict(models["churn-v2"][0].received[-1]["raw_headers"])
    assert raw[b"x-note"] == b"caf\xe9" and raw[b"x-user-id"] == b"u-\xff"


def test_a_redirect_from_the_model_goes_back_to_the_client_and_is_not_followed(start_gateway, models) -> None:
    champion, (challenger, challenger_url) = models["churn-v2"][0], models["churn-v3"]
    champion.status_code = 307
    champion.response_headers = [("location", f"{challenger_url}/predict")]
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0}, fallback_to_champion=False)
    response = gateway.predict("alice")
    assert response.status_code == 307
    assert response.headers["location"] == f"{challenger_url}/predict"
    assert challenger.received == []  # the gateway never called where the model pointed


def test_repeated_model_version_headers_count_as_one_joined_label(start_gateway, models) -> None:
    champion = models["churn-v2"][0]
    champion.response_headers = [("x-model-version", "extra")]  # the model already sends churn-v2-build7
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    assert gateway.predict("alice").status_code == 200
    text = gateway.client.get(f"{gateway.metrics_url}/metrics").text
    assert 'model_version="churn-v2-build7, extra"' in text
