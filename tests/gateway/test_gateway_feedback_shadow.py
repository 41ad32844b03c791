"""Feedback attribution and shadow mirroring: units, then over real HTTP."""

from __future__ import annotations

import json
import re
import time

import pytest

from mlrollouts.gateway.feedback import FeedbackError, parse_feedback
from mlrollouts.gateway.metrics import prediction_bucket
from mlrollouts.gateway.proxy import SIMPLE_SCORE, score_of
from mlrollouts.gateway.shadow import compare_predictions, numeric_score


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"reward": 1}, "token: give the x-mlrollouts-token header"),
        ({"token": "t"}, "exactly one of reward"),
        ({"token": "t", "reward": 1, "value": 2}, "exactly one of reward"),
        ({"token": "t", "reward": 2}, "reward must be 0 or 1"),
        ({"token": "t", "reward": True}, "reward must be 0 or 1"),
        ({"token": "t", "value": "high"}, "value must be a finite number"),
        ({"token": "t", "value": 1e308}, "within ±1e+09 (--max-outcome-value)"),
        ({"token": "t", "value": 10**400}, "within ±1e+09"),
        ({"token": "t", "request_id": 7, "reward": 1}, "request_id must be a string"),
        ([1], "JSON object"),
    ],
)
def test_malformed_feedback_names_the_field(body: object, message: str) -> None:
    with pytest.raises(FeedbackError, match=re.escape(message)):
        parse_feedback(body, max_value=1e9)


def test_predictions_compare_numerically_or_as_json() -> None:
    assert compare_predictions(b'{"prediction": 0.5}', b'{"prediction": 0.5000001}', 1e-6).agree
    far = compare_predictions(b'{"score": 0.2}', b'{"score": 0.7}', 1e-6)
    assert not far.agree and far.difference == pytest.approx(0.5)
    assert compare_predictions(b'{"label": "churn"}', b'{"label": "churn"}', 0).agree
    assert not compare_predictions(b'{"label": "churn"}', b'{"label": "stay"}', 0).agree
    assert not compare_predictions(b"yes", b"no", 0).agree


def test_prediction_buckets_are_deciles() -> None:
    assert [prediction_bucket(v) for v in (0.0, 0.05, 0.1, 0.99, 1.0, 1.5)] == [
        "0.0-0.1",
        "0.0-0.1",
        "0.1-0.2",
        "0.9-1.0",
        "0.9-1.0",
        "out_of_range",
    ]


@pytest.mark.parametrize(
    "body",
    [
        b'{"prediction":0.42}',
        b' {"score" : 1}\n',
        b'{"prediction":-0}',
        b'{"prediction":1e400}',
        b'{"prediction":-2.5E-3}',
        b'{"prediction":1234567890123456}',
        b'{"prediction":' + b"9" * 400 + b"}",  # an int too large for a float: no score
        b'{"prediction":true}',
        b'{"prediction":"0.4"}',
        b'{"prediction":01}',
        b'{"prediction":0.4,"score":0.9}',
        b'{"score":0.9,"prediction":0.1}',
        b'{"predi\\u0063tion":0.3}',
        b'{"prediction":0.3}x',
        b"[0.3]",
    ],
)
def test_the_prediction_histogram_reads_a_score_as_a_full_json_parse_does(body: bytes) -> None:
    try:
        expected = numeric_score(json.loads(body))
    except ValueError:
        expected = None
    assert score_of(body) == expected


def test_the_usual_answer_takes_the_shortcut() -> None:
    assert SIMPLE_SCORE.fullmatch(b'{"prediction":0.42}') is not None
    assert SIMPLE_SCORE.fullmatch(b'{"prediction":0.4,"score":0.9}') is None


@pytest.mark.integration
def test_feedback_is_attributed_to_the_variant_that_served(start_gateway) -> None:
    gateway = start_gateway({"churn-v2": 50, "churn-v3": 50})
    served = {}
    for index in range(20):
        response = gateway.predict(f"user-{index}")
        served[response.headers["x-mlrollouts-token"]] = response.headers["x-mlrollouts-variant"]
    for token, variant in served.items():
        answer = gateway.feedback(token, reward=1)
        assert answer.status_code == 200 and answer.json()["variant"] == variant
    for variant in ("churn-v2", "churn-v3"):
        expected = sum(v == variant for v in served.values())
        assert gateway.metric("model_outcomes_total", variant=variant, outcome="success") == expected
    response = gateway.predict("user-3")
    variant = response.headers["x-mlrollouts-variant"]
    by_value = gateway.feedback(response.headers["x-mlrollouts-token"], value=12.5)
    assert by_value.json()["variant"] == variant
    assert gateway.metric("model_outcome_value_sum", variant=variant) == 12.5
    assert gateway.metric("model_outcome_value_squared_total", variant=variant) == 156.25


@pytest.mark.integration
def test_shadow_never_slows_the_response_and_comparisons_are_exported(start_gateway, models) -> None:
    models["churn-v3"][0].delay_seconds = 2.0
    gateway = start_gateway({"weights": {"churn-v2": 100, "churn-v3": 0}, "phase": "Shadowing"})
    for index in range(5):
        started = time.monotonic()
        response = gateway.predict(f"user-{index}")
        assert time.monotonic() - started < 0.5
        assert response.headers["x-mlrollouts-variant"] == "churn-v2" and response.status_code == 200
    deadline = time.monotonic() + 5
    while gateway.metric("ab_test_shadow_agreement_total", variant="churn-v3") < 5:
        assert time.monotonic() < deadline, "mirrored requests never compared"
        time.sleep(0.05)
    # the fake champion says 0.25, the challenger 0.75: all five disagree by 0.5
    assert gateway.metric("ab_test_shadow_agreement_total", variant="churn-v3", result="disagree") == 5
    assert gateway.metric("ab_test_shadow_latency_seconds_sum", variant="churn-v3") >= 10
    assert gateway.metric("ab_test_requests_total", variant="churn-v3") == 0


@pytest.mark.integration
def test_a_full_shadow_queue_drops_and_counts(start_gateway, models) -> None:
    models["churn-v3"][0].delay_seconds = 2.0
    gateway = start_gateway(
        {"weights": {"churn-v2": 100, "churn-v3": 0}, "phase": "Shadowing"}, shadow_queue_size=1, shadow_workers=1
    )
    for index in range(6):
        assert gateway.predict(f"user-{index}").status_code == 200
    # one mirror in flight, one queued, four dropped
    assert gateway.metric("ab_test_shadow_dropped_total", experiment_id="churn-exp") == 4
