"""Thin async access to the objects the operator reads and writes beyond what kopf does.

Bodies are plain dicts (`_preload_content=False`, parsed once) rather than generated models: cheaper,
and a Secret's data never passes through a model whose repr could print it. Errors become `KubeError`
with the API server's message, masked and trimmed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from apitoken_operator.api.group import GROUP, PLURAL, VERSION
from apitoken_operator.dynatrace.secrets import mask_secrets

__all__ = ["Kube", "KubeError", "connect"]
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
MESSAGE_LIMIT = 256
#: connections to the API server, shared by every reconcile (kopf's watches have their own)
CONNECTIONS = 16


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = mask_secrets(message)[:MESSAGE_LIMIT]
        super().__init__(f"Kubernetes API {status}: {self.message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


async def connect(kubeconfig: str | None = None) -> k8s.ApiClient:
    """An API client from a kubeconfig file, or the in-cluster ServiceAccount when none is given."""
    configuration = k8s.Configuration()
    if kubeconfig:
        await k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            await k8s_config.load_kube_config(client_configuration=configuration)
    # kubernetes_asyncio allows 100 connections: a burst of reconciles opened them all, each TLS
    # connection costing ~250 KB. A few are as fast here, since the API server is the bottleneck.
    configuration.connection_pool_maxsize = CONNECTIONS
    client = k8s.ApiClient(configuration)
    _ignore_proxy_environment(client)
    return client


def _ignore_proxy_environment(client: k8s.ApiClient) -> None:
    """Stop aiohttp from reading proxy variables and ~/.netrc in a thread before every request.

    kubernetes_asyncio makes its session with `trust_env=True`, which costs a thread-pool hop and
    file reads per request (a fifth of the operator's CPU in a burst). kopf's own API calls do not
    trust the environment either (`settings.networking.trust_env` is off by default), and a proxy
    for the API server is still honoured when set in the kubeconfig.
    """
    session = client.rest_client.pool_manager
    session._trust_env = False  # aiohttp has no public setter; `trust_env` reads it (tested)


#: told of every request answered: (verb, resource such as "apitokens/status", HTTP status)
RequestObserver = Callable[[str, str, int], object]


class Kube:
    def __init__(self, api_client: k8s.ApiClient, *, on_request: RequestObserver | None = None) -> None:
        self.api_client = api_client
        self.core = k8s.CoreV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self._on_request = on_request

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._optional(self.core.read_namespaced_secret(name, namespace, _preload_content=False))

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(
            self.core.create_namespaced_secret(namespace, cast(Any, body), _preload_content=False)
        )

    async def replace_secret(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace with the body's resourceVersion: a concurrent change makes it fail (409), not lost."""
        return await self._call(
            self.core.replace_namespaced_secret(name, namespace, cast(Any, body), _preload_content=False)
        )

    async def patch_secret(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self._call(
            self.core.patch_namespaced_secret(  # type: ignore[call-arg]
                name, namespace, patch, _content_type=MERGE_PATCH, _preload_content=False
            )
        )

    async def delete_secret(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        options: dict[str, Any] = {"preconditions": {"uid": uid}} if uid else {}
        await self._optional(
            self.core.delete_namespaced_secret(
                name, namespace, body=cast(Any, options), _preload_content=False
            )
        )

    async def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        await self._call(
            self.core.create_namespaced_event(namespace, cast(Any, body), _preload_content=False)
        )

    async def get_apitoken(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._optional(
            self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
            )
        )

    async def list_apitokens(
        self, namespace: str | None, *, limit: int, continue_token: str | None = None
    ) -> dict[str, Any]:
        """One page of ApiTokens, in `namespace` or in all (None); `metadata.continue` names the next."""
        paging: dict[str, Any] = {"limit": limit, "_preload_content": False}
        if continue_token:
            paging["_continue"] = continue_token
        if namespace is None:
            return await self._call(self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **paging))
        return await self._call(
            self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **paging)
        )

    async def namespace_names(self) -> list[str]:
        listed = await self._call(self.core.list_namespace(_preload_content=False))
        return [str(item["metadata"]["name"]) for item in listed.get("items") or ()]

    async def peering_status(self, name: str, *, namespace: str | None) -> dict[str, Any] | None:
        """The status (identity -> entry) of kopf's peering object: a KopfPeering in `namespace`, or the
        ClusterKopfPeering when None. Listed by name: the operator's RBAC grants list, not get."""
        selector = f"metadata.name={name}"
        if namespace is None:
            request = self.custom.list_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", field_selector=selector, _preload_content=False
            )
        else:
            request = self.custom.list_namespaced_custom_object(
                "kopf.dev", "v1", namespace, "kopfpeerings", field_selector=selector, _preload_content=False
            )
        items = (await self._call(request)).get("items") or []
        if not items:
            return None
        status: dict[str, Any] = items[0].get("status") or {}
        return status

    async def patch_apitoken_status(
        self, namespace: str, name: str, status: dict[str, Any], *, resource_version: str | None = None
    ) -> dict[str, Any]:
        """A merge patch of the status; with `resource_version`, only onto that version (else 409)."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self._call(
            self.custom.patch_namespaced_custom_object_status(  # type: ignore[call-arg]
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
                _content_type=MERGE_PATCH,
                _preload_content=False,
            )
        )

    async def add_finalizer(
        self,
        namespace: str,
        name: str,
        *,
        finalizer: str,
        finalizers: list[str],
        resource_version: str | None = None,
    ) -> str:
        """Append one finalizer (a JSON patch: no resourceVersion, so it can go with a status write).

        With `resource_version`, only onto that version of the object (else 409). Returns the
        resourceVersion written.
        """
        patch: list[dict[str, Any]] = []
        if resource_version:
            patch.append({"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version})
        if finalizers:
            patch.append({"op": "add", "path": "/metadata/finalizers/-", "value": finalizer})
        else:
            patch.append({"op": "add", "path": "/metadata/finalizers", "value": [finalizer]})
        written = await self._patch_apitoken(namespace, name, patch)
        return str(written.get("metadata", {}).get("resourceVersion") or "")

    async def remove_finalizer(
        self, namespace: str, name: str, *, finalizer: str, finalizers: list[str]
    ) -> None:
        """Drop one finalizer, tested in place so that a concurrent change to the list is not lost.

        A test that fails (the list changed since it was read) is retried once on a fresh read; a
        gone object is the goal reached.
        """
        for attempt in range(3):
            if finalizer not in finalizers:
                return
            index = finalizers.index(finalizer)
            patch = [
                {"op": "test", "path": f"/metadata/finalizers/{index}", "value": finalizer},
                {"op": "remove", "path": f"/metadata/finalizers/{index}"},
            ]
            try:
                await self._patch_apitoken(namespace, name, patch)
                return
            except KubeError as error:
                if error.not_found:
                    return
                if error.status not in (409, 422) or attempt == 2:
                    raise
            body = await self.get_apitoken(namespace, name)
            if body is None:
                return
            finalizers = list(body.get("metadata", {}).get("finalizers") or ())

    async def _patch_apitoken(self, namespace: str, name: str, patch: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._call(
            self.custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                _content_type=JSON_PATCH,
                _preload_content=False,
            )
        )

    async def _call(self, request: Awaitable[Any]) -> dict[str, Any]:
        response = await request
        try:
            raw = await response.read()
        finally:
            response.release()
        if self._on_request is not None:
            self._on_request(response.method, resource_of(response.url.path), response.status)
        if not 200 <= response.status <= 299:
            raise KubeError(response.status, _message(raw))
        result: dict[str, Any] = json.loads(raw) if raw else {}
        return result

    async def _optional(self, request: Awaitable[Any]) -> dict[str, Any] | None:
        try:
            return await self._call(request)
        except KubeError as error:
            if error.not_found:
                return None
            raise


def resource_of(path: str) -> str:
    """`/apis/g/v1/namespaces/ns/apitokens/name/status` -> `apitokens/status`: a request's resource, for a
    metric label (never a namespace or a name)."""
    parts = [part for part in path.split("/") if part]
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return "unknown"
    return f"{rest[0]}/{rest[2]}" if len(rest) >= 3 else rest[0]


def _message(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("message") or raw[:MESSAGE_LIMIT].decode(errors="replace"))
    except (ValueError, AttributeError):
        return raw[:MESSAGE_LIMIT].decode(errors="replace")
