"""The arguments the chart passes are ones the `mlrollouts` CLI accepts (flag names drift otherwise)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from chart_support import GATEWAY_ON, PROMETHEUS_CREDENTIALS, VALUE_SETS, one, render

import mlrollouts.cli.gateway_commands  # registers `gateway` on `app`
import mlrollouts.cli.operator_commands  # noqa: F401 - registers `run` on `app`
from mlrollouts.cli.main import app


def command(name: str) -> Any:
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


def parsed(container: dict[str, Any]) -> dict[str, Any]:
    assert container["command"] == ["mlrollouts"]
    name, *args = container["args"]
    return command(name).make_context(name, args).params


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_operator_args_parse(values_name: str) -> None:
    deployment = one(render(VALUE_SETS[values_name]), "Deployment", "rel-mlrollouts")
    params = parsed(deployment["spec"]["template"]["spec"]["containers"][0])
    assert params["metrics_port"] == 8080 and params["liveness_port"] == 8081 and params["readiness_port"] == 8082
    assert params["log_format"] == "json"
    if values_name == "hardened":
        assert params["prometheus_allowed_address"] == PROMETHEUS_CREDENTIALS["allowedAddresses"]
        assert params["prometheus_default_address"] == PROMETHEUS_CREDENTIALS["defaultAddress"]
        assert params["prometheus_secret_name"] == PROMETHEUS_CREDENTIALS["secretNames"]
    else:  # the defaults: no address receives credentials, no Secret is read
        assert params["prometheus_allowed_address"] == [] and params["prometheus_secret_name"] == []
    if values_name in ("namespaced", "hardened"):
        assert params["namespace"] == ["a", "b"] and not params["all_namespaces"]
    else:
        assert params["all_namespaces"] and not params["namespace"]
    # active-active by default: shard Leases, no kopf peering, every replica active
    assert params["shards"] == 16 and not params["standalone"]
    assert (params["lease_duration"], params["renew_deadline"], params["retry_period"]) == (15, 10, 2)


def test_operator_args_parse_without_sharding() -> None:
    values = {**VALUE_SETS["single-replica"], "sharding": {"enabled": False}}
    params = parsed(one(render(values), "Deployment", "rel-mlrollouts")["spec"]["template"]["spec"]["containers"][0])
    assert params["standalone"] and params["shards"] == 0


def test_gateway_args_parse() -> None:
    deployment = one(render({"gateway": GATEWAY_ON}), "Deployment", "rel-mlrollouts-gateway")
    params = parsed(deployment["spec"]["template"]["spec"]["containers"][0])
    assert params["host"] == "0.0.0.0" and params["port"] == 8000
    assert params["namespace"] == "ml" and params["experiment"] == "churn-v3"
    assert params["kubeconfig"] is None and params["split_file"] is None  # in-cluster API


def test_gateway_security_args_parse() -> None:
    values = GATEWAY_ON | {"allowOverrideHeader": True, "metricsPort": 9200}
    deployment = one(render({"gateway": values}), "Deployment", "rel-mlrollouts-gateway")
    params = parsed(deployment["spec"]["template"]["spec"]["containers"][0])
    assert params["metrics_port"] == 9200 and params["allow_override_header"] is True
    assert str(params["signing_key_file"]) == "/etc/mlrollouts/signing-keys/keys"
    ports = {
        port["name"]: port["containerPort"] for port in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert ports == {"http": 8000, "metrics": 9200}


def test_the_chart_credential_values_are_a_policy_the_operator_accepts() -> None:
    from mlrollouts.cli.operator_commands import _credential_policy

    deployment = one(render(VALUE_SETS["hardened"]), "Deployment", "rel-mlrollouts")
    params = parsed(deployment["spec"]["template"]["spec"]["containers"][0])
    policy = _credential_policy(
        params["prometheus_allowed_address"], params["prometheus_default_address"], params["prometheus_secret_name"]
    )
    assert policy.allows_address("https://thanos-query.monitoring:9090/api")
    assert policy.allows_address("http://mimir.obs:8080")
    assert not policy.allows_address("http://prometheus-operated.monitoring:9090")  # the default is not allowed
    assert policy.secret_names == {"prom-token", "prom-ca"}
