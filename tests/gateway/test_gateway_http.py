"""The gateway over real HTTP: assignment, override, bad requests, split reloads, fallback."""

from __future__ import annotations

import logging
import time

import pytest

from mlrollouts.gateway import serve_in_thread

pytestmark = pytest.mark.integration


def test_a_user_always_gets_the_same_variant_and_the_split_is_honoured(start_gateway) -> None:
    gateway = start_gateway({"churn-v2": 70, "churn-v3": 30})
    served = {}
    for index in range(300):
        response = gateway.predict(f"user-{index}")
        assert response.status_code == 200
        served[f"user-{index}"] = response.headers["x-mlrollouts-variant"]
        assert response.json()["model"] == served[f"user-{index}"]
    again = {user: gateway.predict(user).headers["x-mlrollouts-variant"] for user in list(served)[:50]}
    assert again == {user: served[user] for user in again}
    share = sum(variant == "churn-v3" for variant in served.values()) / len(served)
    assert 0.2 < share < 0.4  # 30 % expected; 300 users give a standard error of 2.6 points
    assert gateway.metric("ab_test_requests_total", variant="churn-v3", model_version="churn-v3-build7") > 0


def test_user_id_from_the_json_body_matches_the_header(start_gateway) -> None:
    gateway = start_gateway({"churn-v2": 50, "churn-v3": 50})
    for index in range(40):
        by_header = gateway.predict(f"u{index}").headers["x-mlrollouts-variant"]
        by_field = gateway.predict(json={"user_id": f"u{index}"}).headers["x-mlrollouts-variant"]
        assert by_header == by_field


def test_request_id_is_echoed_or_generated_and_reaches_the_model(start_gateway, models) -> None:
    gateway = start_gateway()
    given = gateway.predict("alice", headers={"x-request-id": "req-42"})
    assert given.headers["x-request-id"] == "req-42"
    model = models[given.headers["x-mlrollouts-variant"]][0]
    assert model.received[-1]["headers"]["x-request-id"] == "req-42"
    generated = gateway.predict("alice").headers["x-request-id"]
    assert len(generated) == 32 and generated != "req-42"


def test_override_header_forces_a_variant_and_rejects_unknown_names(start_gateway) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0}, allow_override_header=True)
    forced = gateway.predict("bob", headers={"x-mlrollouts-variant": "churn-v3"})
    assert forced.headers["x-mlrollouts-variant"] == "churn-v3"
    unknown = gateway.predict("bob", headers={"x-mlrollouts-variant": "churn-v9"})
    assert unknown.status_code == 400
    assert "churn-v9" in unknown.json()["error"] and "churn-v2" in unknown.json()["error"]


def test_requests_without_user_are_split_per_request_and_counted(start_gateway) -> None:
    gateway = start_gateway({"churn-v2": 50, "churn-v3": 50})
    variants = {gateway.predict().headers["x-mlrollouts-variant"] for _ in range(40)}
    assert variants == {"churn-v2", "churn-v3"}
    assert gateway.metric("ab_test_unassigned_requests_total", experiment_id="churn-exp") == 40


def test_bad_requests_get_4xx_with_a_message(start_gateway) -> None:
    gateway = start_gateway(max_body_bytes=1000)
    url = f"{gateway.url}/predict"
    empty = gateway.client.post(url, content=b"")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    invalid = gateway.client.post(url, content=b"{not json")
    assert invalid.status_code == 400 and "not valid JSON" in invalid.json()["error"]
    huge = gateway.client.post(url, content=b'{"x": "' + b"a" * 5000 + b'"}')
    assert huge.status_code == 413 and "--max-body-bytes" in huge.json()["error"]

    def chunks():
        yield b'{"x": "'
        for _ in range(10):
            yield b"a" * 500  # no content-length: the limit must hold while streaming
        yield b'"}'

    streamed = gateway.client.post(url, content=chunks())
    assert streamed.status_code == 413


def test_a_changed_split_file_applies_and_a_bad_one_keeps_the_last_good_split(start_gateway, caplog) -> None:
    """The file is re-read while serving (how fast is `make bench`'s business; 10 s is only a failure budget)."""
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    assert gateway.predict("carol").headers["x-mlrollouts-variant"] == "churn-v2"
    gateway.write_split({"churn-v2": 0, "churn-v3": 100})
    deadline = time.monotonic() + 10
    while gateway.predict("carol").headers["x-mlrollouts-variant"] != "churn-v3":
        assert time.monotonic() < deadline, "split change never applied"
        time.sleep(0.02)
    with caplog.at_level(logging.WARNING, logger="mlrollouts.gateway.split_source"):
        gateway.write_split({"churn-v2": 60, "churn-v3": 60})
        deadline = time.monotonic() + 10
        while "sum to 120" not in caplog.text:
            assert time.monotonic() < deadline, "the bad split file was never reported"
            time.sleep(0.05)
    assert gateway.client.get(f"{gateway.metrics_url}/readyz").json()["weights"] == {"churn-v2": 0, "churn-v3": 100}
    assert gateway.predict("carol").headers["x-mlrollouts-variant"] == "churn-v3"


def test_the_public_readyz_tells_nothing_about_the_experiment(start_gateway) -> None:
    """Weights and shadow mode are experiment internals: only the metrics port shows them."""
    gateway = start_gateway({"churn-v2": 70, "churn-v3": 30})
    public = gateway.client.get(f"{gateway.url}/readyz")
    assert public.status_code == 200 and public.json() == {"ready": True}
    assert "churn" not in public.text
    internal = gateway.client.get(f"{gateway.metrics_url}/readyz").json()
    assert internal == {"ready": True, "weights": {"churn-v2": 70, "churn-v3": 30}, "shadow": False}


def test_failing_challenger_falls_back_to_the_champion(start_gateway, models) -> None:
    models["churn-v3"][0].status_code = 503
    gateway = start_gateway({"churn-v2": 0, "churn-v3": 100})
    response = gateway.predict("dave")
    assert response.status_code == 200
    assert response.headers["x-mlrollouts-variant"] == "churn-v2"
    assert response.headers["x-mlrollouts-fallback"] == "true"
    assert gateway.metric("ab_test_errors_total", variant="churn-v3", kind="status_5xx") == 1
    assert gateway.metric("ab_test_fallbacks_total", variant="churn-v3") == 1

    qa = start_gateway({"churn-v2": 0, "churn-v3": 100}, allow_override_header=True)
    forced = qa.predict("dave", headers={"x-mlrollouts-variant": "churn-v3"})
    assert forced.status_code == 503  # QA asked for this variant: show its failure, do not mask it


def test_unreachable_challenger_without_fallback_is_a_502(start_gateway, models) -> None:
    gateway = start_gateway(
        {"churn-v2": 0, "churn-v3": 100},
        upstreams={"churn-v2": models["churn-v2"][1], "churn-v3": "http://127.0.0.1:9"},
        fallback_to_champion=False,
    )
    response = gateway.predict("erin")
    assert response.status_code == 502
    assert response.json()["error"] == "variant churn-v3 unreachable"  # no internal host or exception text
    assert gateway.metric("ab_test_errors_total", variant="churn-v3", kind="connect") == 1


def test_path_prefix_forwards_the_same_path(start_gateway, models) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0}, path_prefix="/v1/models")
    response = gateway.client.post(f"{gateway.url}/v1/models/churn:predict?explain=1", json={"user_id": "f"})
    assert response.status_code == 200
    assert models["churn-v2"][0].received[-1]["path"] == "/v1/models/churn:predict"


def test_upstream_connections_are_pooled_not_opened_per_request(start_gateway, models) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    for index in range(30):
        assert gateway.predict(f"user-{index}").status_code == 200
    ports = {request["client_port"] for request in models["churn-v2"][0].received}
    assert len(ports) == 1  # sequential requests reuse one keep-alive connection


def test_a_slow_challenger_times_out_and_the_champion_answers(start_gateway, models) -> None:
    models["churn-v3"][0].delay_seconds = 10.0
    gateway = start_gateway({"churn-v2": 0, "churn-v3": 100}, timeout_seconds=4.0, challenger_timeout_seconds=0.3)
    started = time.monotonic()
    response = gateway.predict("gina")
    assert time.monotonic() - started < 3.0  # the challenger gave up after 0.3 s, not the 10 s it takes
    assert response.headers["x-mlrollouts-variant"] == "churn-v2" and response.status_code == 200
    assert gateway.metric("ab_test_errors_total", variant="churn-v3", kind="timeout") == 1
    # a timeout still counts in the latency histogram, at the time it took to give up
    assert gateway.metric("ab_test_latency_seconds_bucket", variant="churn-v3", le="0.25") == 0
    assert gateway.metric("ab_test_latency_seconds_bucket", variant="churn-v3", le="5.0") == 1


def test_metrics_carry_the_model_version_and_prediction_decile(start_gateway) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    for index in range(3):
        gateway.predict(f"hal-{index}")
    labels = {"experiment_id": "churn-exp", "variant": "churn-v2", "model_version": "churn-v2-build7"}
    assert gateway.metric("ab_test_requests_total", **labels) == 3
    assert gateway.metric("ab_test_latency_seconds_count", **labels) == 3
    assert gateway.metric("ab_test_predictions_total", **labels, bucket="0.2-0.3") == 3  # the fake says 0.25
    assert gateway.metric("ab_test_split_weight_percent", variant="churn-v3") == 0
    assert gateway.client.get(f"{gateway.url}/healthz").text == "ok"


def test_error_and_outcome_series_exist_at_zero_before_the_first_error(start_gateway) -> None:
    """An error-rate query must read 0 for a healthy variant, not "no data" (which the operator treats as
    metrics unavailable and eventually pauses on)."""
    from prometheus_client.parser import text_string_to_metric_families

    gateway = start_gateway({"churn-v2": 90, "churn-v3": 10})
    text = gateway.client.get(f"{gateway.metrics_url}/metrics").text
    series = {
        (
            sample.name,
            sample.labels.get("variant"),
            sample.labels.get("kind") or sample.labels.get("outcome"),
        ): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    for variant in ("churn-v2", "churn-v3"):
        assert series[("ab_test_requests_total", variant, None)] == 0
        for kind in ("connect", "timeout", "status_5xx"):
            assert series[("ab_test_errors_total", variant, kind)] == 0
        for outcome in ("success", "failure"):
            assert series[("model_outcomes_total", variant, outcome)] == 0


def test_routes_outside_the_prediction_shortcut_answer_as_starlette_routes_them(start_gateway, models) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0}, path_prefix="/v1")
    wrong_method = gateway.client.get(f"{gateway.url}/predict")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert gateway.client.post(f"{gateway.url}/predictions", json={}).status_code == 404
    assert gateway.client.post(f"{gateway.url}/v1beta/x", json={}).status_code == 404  # not under the prefix
    head = gateway.client.head(f"{gateway.url}/v1/health")  # HEAD: Starlette's GET route, the same handler
    assert head.status_code == 200 and head.headers["x-mlrollouts-variant"] == "churn-v2"
    assert head.content == b"" and models["churn-v2"][0].received[-1]["path"] == "/v1/health"
    after = gateway.client.post(f"{gateway.url}/v1/predict", json={"user_id": "u"})  # the pool still works
    assert after.status_code == 200 and after.json()["model"] == "churn-v2"


def test_a_204_from_the_model_goes_back_without_a_body_or_a_content_length(start_gateway, models) -> None:
    async def no_content(scope, receive, send) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": [(b"x-model-version", b"nc-1")]})
            await send({"type": "http.response.body", "body": b""})

    with serve_in_thread(no_content) as url:
        gateway = start_gateway(
            {"churn-v2": 100, "churn-v3": 0}, upstreams={"churn-v2": url, "churn-v3": models["churn-v3"][1]}
        )
        response = gateway.predict("alice")
    assert response.status_code == 204 and response.content == b""
    assert "content-length" not in response.headers and response.headers["x-mlrollouts-variant"] == "churn-v2"
