"""The Kubernetes client's session: no proxy environment or ~/.netrc read (in a thread) per request."""

from __future__ import annotations

from kubernetes_asyncio import client as k8s

from apitoken_operator.kube.api import _ignore_proxy_environment


async def test_the_session_does_not_read_the_environment_before_each_request() -> None:
    api_client = k8s.ApiClient(k8s.Configuration(host="https://127.0.0.1:1"))
    try:
        assert api_client.rest_client.pool_manager.trust_env  # what kubernetes_asyncio sets
        _ignore_proxy_environment(api_client)
        assert api_client.rest_client.pool_manager.trust_env is False
    finally:
        await api_client.close()
