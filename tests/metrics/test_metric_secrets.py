"""provider_for: credentials and timeout from the spec and its Secrets; a missing one names the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mlrollouts.api import ModelExperiment
from mlrollouts.metrics.base import MetricsUnavailable
from mlrollouts.metrics.prometheus import provider_for
from mlrollouts.metrics.secrets import MetricsConfigError, SecretKeyNotFound, SecretNotFound

PEM = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ==\n-----END CERTIFICATE-----\n"


def secrets_reader(store: dict[tuple[str, str], dict[str, bytes]]) -> Callable[[str, str, str], bytes]:
    """What the controller passes: raises SecretNotFound / SecretKeyNotFound for what is missing."""

    def read(namespace: str, name: str, key: str) -> bytes:
        if (namespace, name) not in store:
            raise SecretNotFound(f"{namespace}/{name}")
        if key not in store[namespace, name]:
            raise SecretKeyNotFound(key)
        return store[namespace, name][key]

    return read


def with_prometheus(factory: Callable[..., ModelExperiment], **connection: object) -> ModelExperiment:
    return factory("https://prometheus.monitoring:9090", prometheus=connection)


def test_token_ca_and_timeout_come_from_the_spec(experiment_factory: Callable[..., ModelExperiment]) -> None:
    experiment = with_prometheus(
        experiment_factory,
        bearerTokenSecretRef={"name": "prom-token", "key": "token"},
        caSecretRef={"name": "prom-ca", "key": "ca.crt"},
        timeout="3s",
    )
    read = secrets_reader({("ml", "prom-token"): {"token": b"s3cret\n"}, ("ml", "prom-ca"): {"ca.crt": PEM}})
    provider = provider_for(experiment, read)
    assert provider.address == "https://prometheus.monitoring:9090"
    assert provider.timeout_seconds == 3
    assert provider.ca_file is not None and Path(provider.ca_file).read_bytes() == PEM
    assert provider_for(experiment, read).ca_file == provider.ca_file  # rebuilt every tick, written once


def test_no_secret_refs_means_no_credentials(experiment_factory: Callable[..., ModelExperiment]) -> None:
    provider = provider_for(experiment_factory("http://prometheus:9090"), secrets_reader({}))
    assert provider.ca_file is None and provider.timeout_seconds == 10


def test_a_missing_key_names_the_field_secret_and_key(experiment_factory: Callable[..., ModelExperiment]) -> None:
    experiment = with_prometheus(experiment_factory, bearerTokenSecretRef={"name": "prom-token", "key": "token"})
    with pytest.raises(MetricsConfigError) as caught:
        provider_for(experiment, secrets_reader({("ml", "prom-token"): {"password": b"x"}}))
    assert str(caught.value) == 'spec.analysis.prometheus.bearerTokenSecretRef: secret ml/prom-token has no key "token"'
    assert caught.value.field == "spec.analysis.prometheus.bearerTokenSecretRef"
    assert isinstance(caught.value, MetricsUnavailable)  # held like an outage; creating the key heals it


def test_a_missing_secret_names_the_field(experiment_factory: Callable[..., ModelExperiment]) -> None:
    experiment = with_prometheus(experiment_factory, caSecretRef={"name": "prom-ca", "key": "ca.crt"})
    with pytest.raises(MetricsConfigError, match=r"^spec.analysis.prometheus.caSecretRef: secret ml/prom-ca not found"):
        provider_for(experiment, secrets_reader({}))


@pytest.mark.parametrize(
    ("ref_field", "value", "complaint"),
    [
        ("bearerTokenSecretRef", b"line1\nline2", "is not a printable one-line bearer token"),
        ("bearerTokenSecretRef", b"  \n", "is not a printable one-line bearer token"),
        ("bearerTokenSecretRef", b"\xff\xfe", "is not a printable one-line bearer token"),
        ("caSecretRef", b"not a certificate", "is not a PEM certificate bundle"),
    ],
)
def test_unusable_secret_content_is_refused(
    experiment_factory: Callable[..., ModelExperiment], ref_field: str, value: bytes, complaint: str
) -> None:
    experiment = with_prometheus(experiment_factory, **{ref_field: {"name": "s", "key": "k"}})
    with pytest.raises(MetricsConfigError) as caught:
        provider_for(experiment, secrets_reader({("ml", "s"): {"k": value}}))
    assert str(caught.value) == f'spec.analysis.prometheus.{ref_field}: key "k" of secret ml/s {complaint}'
