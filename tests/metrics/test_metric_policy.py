"""Allowed Prometheus addresses: exact scheme, host and port, a path under the prefix, and no parser tricks."""

from __future__ import annotations

import pytest

from mlrollouts.metrics.policy import CredentialPolicy

POLICY = CredentialPolicy(("https://prometheus.monitoring:9090", "https://thanos.example/prom", "mimir.obs:8080"))


@pytest.mark.parametrize(
    "address",
    [
        "https://prometheus.monitoring:9090",
        "https://prometheus.monitoring:9090/",
        "https://PROMETHEUS.monitoring:9090",
        "https://thanos.example/prom",
        "https://thanos.example:443/prom/tenant-a",
        "http://mimir.obs:8080/prometheus",
        "https://mimir.obs:8080",
    ],
)
def test_listed_addresses_are_allowed(address: str) -> None:
    assert POLICY.allows_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "http://prometheus.monitoring:9090",  # scheme differs: the token would travel in clear text
        "https://prometheus.monitoring:9091",
        "https://prometheus.monitoring:9090.evil.com",
        "https://prometheus.monitoring:9090@evil.com",
        "https://evil.com#@prometheus.monitoring:9090",
        "https://evil.com\\@prometheus.monitoring:9090",
        "https://prometheus.monitoring.evil.com:9090",
        "https://thanos.example/prometheus",  # a prefix is matched per path segment
        "https://thanos.example/",
        "https://thanos.example/prom?x=1",
        "http://mimir.obs:8081",
        "http://user:pw@mimir.obs:8080",
        "https://prometheus.monitoring:9090 ",
    ],
)
def test_anything_else_is_refused(address: str) -> None:
    assert not POLICY.allows_address(address)


def test_no_list_allows_nothing() -> None:
    assert not CredentialPolicy().allows_address("https://prometheus.monitoring:9090")


@pytest.mark.parametrize("entry", ["prometheus", "ftp://x:21", "https://u:p@x:1", "https://x/?q=1", "host:notaport"])
def test_a_malformed_entry_is_refused_at_startup(entry: str) -> None:
    with pytest.raises(ValueError, match="allowed Prometheus address"):
        CredentialPolicy((entry,))
