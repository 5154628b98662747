"""The Kubernetes client: no proxy environment or ~/.netrc read (in a thread) per request; the label
of its requests metric."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client as k8s

from apitoken_operator.kube.api import _ignore_proxy_environment, resource_of


async def test_the_session_does_not_read_the_environment_before_each_request() -> None:
    api_client = k8s.ApiClient(k8s.Configuration(host="https://127.0.0.1:1"))
    try:
        assert api_client.rest_client.pool_manager.trust_env  # what kubernetes_asyncio sets
        _ignore_proxy_environment(api_client)
        assert api_client.rest_client.pool_manager.trust_env is False
    finally:
        await api_client.close()


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/api/v1/namespaces/team-a/secrets/tok", "secrets"),
        ("/api/v1/namespaces/team-a/secrets", "secrets"),
        ("/api/v1/namespaces/team-a/events", "events"),
        ("/apis/dynatrace.apitokens.io/v1alpha1/namespaces/team-a/apitokens/tok", "apitokens"),
        ("/apis/dynatrace.apitokens.io/v1alpha1/namespaces/team-a/apitokens/tok/status", "apitokens/status"),
        ("/apis/kopf.dev/v1/clusterkopfpeerings", "clusterkopfpeerings"),
        ("/apis/kopf.dev/v1/namespaces/team-a/kopfpeerings", "kopfpeerings"),
        ("/api/v1/namespaces/team-a", "namespaces"),
        ("/api/v1/namespaces", "namespaces"),
        ("/version", "unknown"),
    ],
)
def test_a_requests_metric_label_is_its_resource_never_a_namespace_or_name(path: str, resource: str) -> None:
    assert resource_of(path) == resource
