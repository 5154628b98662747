"""kopf registrations only: turn kopf's calls into `Reconciler.reconcile` and its results into kopf's retries.

Handlers return nothing (a return value would be stored in the status, and must never carry a
secret); the reconciler writes the status itself.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from apitoken_operator.controller.connections import Connections
from apitoken_operator.controller.gather import RELEASE_ANNOTATION
from apitoken_operator.controller.reconciler import Reconciler, Result
from apitoken_operator.dynatrace.secrets import install_log_masking
from apitoken_operator.kube import api
from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.reconcile.secret_layout import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from apitoken_operator.settings import OperatorSettings

FINALIZER = "dynatrace.apitokens.io/finalizer"
ANNOTATION_PREFIX = "dynatrace.apitokens.io"
RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What the handlers share, made at start-up (the API client needs the running event loop)."""

    settings: OperatorSettings
    kubeconfig: str | None = None
    reconciler: Reconciler | None = None
    connections: Connections | None = None
    api_client: Any = None
    background: set[asyncio.Task[None]] = field(default_factory=set)


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        install_log_masking()
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        settings.posting.level = logging.INFO  # only our explicit Events; log lines are not posted
        settings.posting.loggers = False
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.execution.max_workers = 4  # for sync code only; our handlers are async
        runtime.api_client = await api.connect(runtime.kubeconfig)
        kube = api.Kube(runtime.api_client)
        runtime.connections = Connections(kube, runtime.settings)
        runtime.reconciler = Reconciler(
            kube=kube, connections=runtime.connections, settings=runtime.settings, events=_post_event
        )

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        for task in list(runtime.background):
            task.cancel()
        if runtime.connections is not None:
            await runtime.connections.close()
        if runtime.api_client is not None:
            await runtime.api_client.close()

    @kopf.index(*RESOURCE, id="token_ids", registry=registry)
    def token_ids(status: kopf.Status, uid: str | None, **_: Any) -> dict[str, str] | None:
        token_id = status.get("id")
        return {token_id: uid or ""} if token_id else None

    @kopf.on.resume(*RESOURCE, id="reconcile", registry=registry)
    @kopf.on.create(*RESOURCE, id="reconcile", registry=registry)
    @kopf.on.update(*RESOURCE, id="reconcile", registry=registry)
    async def reconcile(body: kopf.Body, **kwargs: Any) -> None:
        result = await _reconciler(runtime).reconcile(_copy(body), ids_of_others=_others(kwargs["token_ids"]))
        _raise_for_retry(result)

    @kopf.on.delete(*RESOURCE, id="delete", registry=registry)
    async def delete(body: kopf.Body, **kwargs: Any) -> None:
        others = _others(kwargs["token_ids"])
        result = await _reconciler(runtime).reconcile(_copy(body), deleting=True, ids_of_others=others)
        if not result.released:
            raise kopf.TemporaryError(result.outcome.message, delay=result.retry_after or 10)
        _reconciler(runtime).forget(body.get("metadata", {}).get("uid", ""))

    @kopf.on.event(*RESOURCE, id="release", registry=registry)
    async def release(body: kopf.Body, **_: Any) -> None:
        """The release annotation on an object being deleted lets it go at once, not at the next retry."""
        metadata = body.get("metadata", {})
        if not (
            metadata.get("deletionTimestamp")
            and FINALIZER in (metadata.get("finalizers") or ())
            and (metadata.get("annotations") or {}).get(RELEASE_ANNOTATION) == "true"
        ):
            return
        token_id = body.get("status", {}).get("id") or "(none)"
        _post_event(
            dict(body),
            type="Normal",
            reason=Reason.RELEASED,
            message=f"released by annotation; token {token_id} left in Dynatrace",
        )
        assert runtime.api_client is not None
        await api.Kube(runtime.api_client).release_finalizer(
            metadata["namespace"],
            metadata["name"],
            finalizer=FINALIZER,
            finalizers=list(metadata.get("finalizers") or ()),
            resource_version=metadata.get("resourceVersion"),
        )

    @kopf.on.event(
        "",
        "v1",
        "secrets",
        labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        id="secret_changed",
        registry=registry,
    )
    async def secret_changed(event: kopf.RawEvent, body: kopf.Body, **kwargs: Any) -> None:
        """A Secret the operator wrote was edited or deleted: reconcile its ApiToken (out of band)."""
        if event.get("type") not in ("MODIFIED", "DELETED"):
            return
        owner = next(
            (
                ref
                for ref in body.get("metadata", {}).get("ownerReferences") or ()
                if ref.get("kind") == "ApiToken" and ref.get("controller")
            ),
            None,
        )
        namespace = body.get("metadata", {}).get("namespace")
        if owner is None or not namespace:
            return
        await _reconcile_out_of_band(runtime, namespace, owner["name"], kwargs["token_ids"])

    return registry


async def _reconcile_out_of_band(
    runtime: Runtime, namespace: str, name: str, token_ids: kopf.Index[str, str]
) -> None:
    reconciler = _reconciler(runtime)
    assert runtime.api_client is not None
    body = await api.Kube(runtime.api_client).get_apitoken(namespace, name)
    if body is None or body.get("metadata", {}).get("deletionTimestamp"):
        return
    result = await reconciler.reconcile(body, ids_of_others=_others(token_ids))
    if result.retry_after is not None:
        task = asyncio.create_task(_retry_later(runtime, namespace, name, token_ids, result.retry_after))
        runtime.background.add(task)
        task.add_done_callback(runtime.background.discard)


async def _retry_later(
    runtime: Runtime, namespace: str, name: str, token_ids: kopf.Index[str, str], delay: float
) -> None:
    await asyncio.sleep(delay)
    await _reconcile_out_of_band(runtime, namespace, name, token_ids)


def _reconciler(runtime: Runtime) -> Reconciler:
    if runtime.reconciler is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return runtime.reconciler


def _copy(body: kopf.Body) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


def _others(index: kopf.Index[str, str]) -> Any:
    def ids_of_others(uid: str) -> Collection[str]:
        return {token_id for token_id, owners in index.items() if any(owner != uid for owner in owners)}

    return ids_of_others


def _raise_for_retry(result: Result) -> None:
    if result.retry_after is not None:
        raise kopf.TemporaryError(result.outcome.message, delay=result.retry_after)


def _post_event(body: dict[str, Any], *, type: str, reason: str, message: str) -> None:
    kopf.event(cast(kopf.Body, body), type=type, reason=reason, message=message)
