"""`kube.api`'s conditional writes against a real kube-apiserver: what peering's safety rests on.

Two replicas that read the same version of an ApiToken must not both record an intent: the finalizer
patch and the intent's status patch go only onto the version they were decided on, and a write made
meanwhile by anybody turns them into a 409 (the reconcile then reads the object again).
"""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from apitoken_operator.api import group
from apitoken_operator.kube import api
from tests.fixtures.cluster import Cluster

NAME = "conditional"


def create_apitoken(k8s: kubernetes.client.ApiClient, namespace: str) -> dict[str, Any]:
    custom = kubernetes.client.CustomObjectsApi(k8s)
    body = {
        "apiVersion": f"{group.GROUP}/{group.VERSION}",
        "kind": "ApiToken",
        "metadata": {"name": NAME},
        "spec": {"name": "conditional writes", "scopes": ["metrics.ingest"]},
    }
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        group.GROUP, group.VERSION, namespace, group.PLURAL, body
    )
    return created


def touch(k8s: kubernetes.client.ApiClient, namespace: str) -> None:
    """Another writer's change (a label), made after the version was read."""
    kubernetes.client.CustomObjectsApi(k8s).patch_namespaced_custom_object(
        group.GROUP,
        group.VERSION,
        namespace,
        group.PLURAL,
        NAME,
        {"metadata": {"labels": {"touched": "yes"}}},
    )


async def test_a_finalizer_goes_only_onto_the_version_read(
    cluster: Cluster, k8s: kubernetes.client.ApiClient, namespace: str
) -> None:
    read = create_apitoken(k8s, namespace)["metadata"]["resourceVersion"]
    touch(k8s, namespace)
    client = await api.connect(str(cluster.kubeconfig))
    try:
        kube = api.Kube(client)
        with pytest.raises(api.KubeError) as refused:
            await kube.add_finalizer(
                namespace, NAME, finalizer="x.io/f", finalizers=[], resource_version=read
            )
        assert refused.value.conflict
        body = await kube.get_apitoken(namespace, NAME)
        assert body is not None and not body["metadata"].get("finalizers")
        current = body["metadata"]["resourceVersion"]
        written = await kube.add_finalizer(
            namespace, NAME, finalizer="x.io/f", finalizers=[], resource_version=current
        )
        body = await kube.get_apitoken(namespace, NAME)
        assert body is not None and body["metadata"]["finalizers"] == ["x.io/f"]
        assert body["metadata"]["resourceVersion"] == written
    finally:
        await client.close()


async def test_an_intent_goes_only_onto_the_version_read(
    cluster: Cluster, k8s: kubernetes.client.ApiClient, namespace: str
) -> None:
    read = create_apitoken(k8s, namespace)["metadata"]["resourceVersion"]
    touch(k8s, namespace)
    intent = {"pendingCreate": {"attempt": "a1", "name": "conditional writes"}}
    client = await api.connect(str(cluster.kubeconfig))
    try:
        kube = api.Kube(client)
        with pytest.raises(api.KubeError) as refused:
            await kube.patch_apitoken_status(namespace, NAME, intent, resource_version=read)
        assert refused.value.conflict
        body = await kube.get_apitoken(namespace, NAME)
        assert body is not None and not (body.get("status") or {}).get("pendingCreate")
        current = body["metadata"]["resourceVersion"]
        written = await kube.patch_apitoken_status(namespace, NAME, intent, resource_version=current)
        assert written["status"]["pendingCreate"]["attempt"] == "a1"
        assert written["metadata"]["labels"] == {"touched": "yes"}, "the precondition changed metadata"
    finally:
        await client.close()
