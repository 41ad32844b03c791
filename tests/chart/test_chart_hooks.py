"""The chart's webhooks.* and notifications.* values reach the operator as flags it accepts, default receivers'
URLs come from Secrets as environment variables, and RBAC grants exactly the listed Secret names."""

from __future__ import annotations

import kubernetes_validate
from chart_support import custom_resource_schemas, one, render, validate_custom_resource
from test_chart_cli_args import parsed
from test_chart_render import KUBE_VERSION

from mlrollouts.cli.hook_options import hook_policy

HOOKS = {
    "webhooks": {"allowedAddresses": ["http://flagger-loadtester.test:80", "approvals.platform:8443"]},
    "notifications": {
        "defaults": [
            {"name": "platform", "type": "slack", "urlSecret": {"name": "platform-slack", "key": "url"}},
            {"name": "audit", "urlSecret": {"name": "audit-hook", "key": "url"}},
        ],
        "allowedAddresses": ["https://hooks.slack.com/services/"],
        "secretNames": ["mlrollouts-notify", "prom-token"],
    },
    "prometheus": {"allowedAddresses": ["https://thanos.monitoring:9090"], "secretNames": ["prom-token"]},
}


def _container() -> dict:
    deployment = one(render(HOOKS), "Deployment", "rel-mlrollouts")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_values_become_flags_the_operator_accepts(monkeypatch) -> None:
    container = _container()
    params = parsed(container)
    assert params["webhook_allowed_address"] == HOOKS["webhooks"]["allowedAddresses"]
    assert params["notification_allowed_address"] == ["https://hooks.slack.com/services/"]
    assert params["notification_secret_name"] == ["mlrollouts-notify", "prom-token"]
    assert params["default_notification"] == [
        "platform:slack:MLROLLOUTS_NOTIFICATION_URL_0",
        "audit:webhook:MLROLLOUTS_NOTIFICATION_URL_1",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLROLLOUTS_NOTIFICATION_URL_0"]["valueFrom"]["secretKeyRef"] == {"name": "platform-slack", "key": "url"}
    assert env["MLROLLOUTS_NOTIFICATION_URL_1"]["valueFrom"]["secretKeyRef"] == {"name": "audit-hook", "key": "url"}
    # What the operator makes of them once the kubelet filled the variables in.
    monkeypatch.setenv("MLROLLOUTS_NOTIFICATION_URL_0", "https://hooks.slack.com/services/T/B/X")
    monkeypatch.setenv("MLROLLOUTS_NOTIFICATION_URL_1", "https://audit.platform/hooks")
    policy = hook_policy(
        params["webhook_allowed_address"],
        params["notification_allowed_address"],
        params["notification_secret_name"],
        params["default_notification"],
    )
    assert [r.name for r in policy.default_receivers] == ["platform", "audit"]
    assert policy.allows_gate("http://flagger-loadtester.test/") and not policy.allows_gate("http://evil.test/")


def test_rbac_reads_the_prometheus_and_notification_secrets_by_name_only() -> None:
    role = one(render(HOOKS), "ClusterRole", "rel-mlrollouts")
    (rule,) = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert rule["verbs"] == ["get"]
    assert rule["resourceNames"] == ["prom-token", "mlrollouts-notify"]


def test_defaults_read_no_secret_and_call_nothing() -> None:
    container = one(render({}), "Deployment", "rel-mlrollouts")["spec"]["template"]["spec"]["containers"][0]
    params = parsed(container)
    assert params["webhook_allowed_address"] == params["notification_allowed_address"] == []
    assert params["default_notification"] == [] and params["notification_secret_name"] == []
    role = one(render({}), "ClusterRole", "rel-mlrollouts")
    assert not [r for r in role["rules"] if "secrets" in r["resources"]]


def test_every_object_rendered_with_hooks_is_valid() -> None:
    for obj in render(HOOKS):
        if (obj["apiVersion"], obj["kind"]) in custom_resource_schemas():
            validate_custom_resource(obj)
        else:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
