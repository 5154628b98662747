"""kopf registrations only: turn kopf's calls into `Reconciler.reconcile` and its results into retries.

Handlers return nothing (a return value would be stored in the status, and must never carry a
secret); the reconciler writes the status itself. What kopf's change handlers do not cover — a
managed Secret edited, drift found by a listing, a renewal or a grace period coming due — goes
through one `Scheduler` as out-of-band reconciles of the same, per-object-locked `Reconciler`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Collection, Hashable
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from apitoken_operator.controller.connections import Connections
from apitoken_operator.controller.gather import RELEASE_ANNOTATION
from apitoken_operator.controller.reconciler import Reconciler, Result
from apitoken_operator.controller.scheduler import Scheduler
from apitoken_operator.dynatrace.secrets import install_log_masking
from apitoken_operator.kube import api
from apitoken_operator.metrics import Metrics
from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.reconcile.secret_layout import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from apitoken_operator.settings import OperatorSettings

FINALIZER = "dynatrace.apitokens.io/finalizer"
#: kopf marks its storage prefix and ignores every annotation under it, so it must not be the prefix of
#: the annotations users set (rotate, check, release).
ANNOTATION_PREFIX = "kopf.dynatrace.apitokens.io"
CHECK_ANNOTATION = "dynatrace.apitokens.io/check"
RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
logger = logging.getLogger(__name__)

#: token id -> (uid, namespace, name) of the ApiTokens recording it
TokenIndex = kopf.Index[str, tuple[str, str, str]]


@dataclass
class Runtime:
    """What the handlers share, made at start-up (the API client needs the running event loop)."""

    settings: OperatorSettings
    kubeconfig: str | None = None
    #: serve Prometheus metrics on this port (None: not served)
    metrics_port: int | None = None
    metrics: Metrics = field(default_factory=Metrics)
    reconciler: Reconciler | None = None
    connections: Connections | None = None
    scheduler: Scheduler | None = None
    api_client: Any = None
    #: kopf's live index of recorded token ids, captured from the first handler call
    token_index: TokenIndex | None = None
    background: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:  # noqa: PLR0915 - registrations only
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
        # Watch only the Secrets the operator manages, filtered by the API server: the operator never
        # receives (or keeps in memory) the data of anybody else's Secrets.
        settings.watching.label_selectors["v1", "secrets"] = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
        runtime.api_client = await api.connect(runtime.kubeconfig)
        kube = api.Kube(runtime.api_client)
        runtime.connections = Connections(kube, runtime.settings, metrics=runtime.metrics)
        runtime.connections.on_change = lambda ids: _drifted(runtime, ids)
        runtime.reconciler = Reconciler(
            kube=kube,
            connections=runtime.connections,
            settings=runtime.settings,
            events=_post_event,
            metrics=runtime.metrics,
        )
        runtime.metrics.count_managed(
            lambda: len(runtime.token_index) if runtime.token_index is not None else 0
        )
        if runtime.metrics_port is not None:
            runtime.metrics.serve(runtime.metrics_port)
        runtime.scheduler = Scheduler(lambda key: _reconcile_out_of_band(runtime, key))

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
    def token_ids(
        status: kopf.Status, uid: str | None, namespace: str | None, name: str | None, **_: Any
    ) -> dict[str, tuple[str, str, str]] | None:
        token_id = status.get("id")
        if not token_id:
            return None
        return {token_id: (uid or "", namespace or "", name or "")}

    @kopf.on.resume(*RESOURCE, id="reconcile", registry=registry)
    @kopf.on.create(*RESOURCE, id="reconcile", registry=registry)
    @kopf.on.update(*RESOURCE, id="reconcile", registry=registry)
    async def reconcile(body: kopf.Body, old: Any, new: Any, **kwargs: Any) -> None:
        index = _capture_index(runtime, kwargs)
        fresh = _annotation(old, CHECK_ANNOTATION) != _annotation(new, CHECK_ANNOTATION)
        result = await _reconciler(runtime).reconcile(_copy(body), ids_of_others=_others(index), fresh=fresh)
        _follow_up(runtime, body, result)
        if result.retry_after is not None:
            raise kopf.TemporaryError(result.outcome.message, delay=result.retry_after)

    @kopf.on.delete(*RESOURCE, id="delete", registry=registry)
    async def delete(body: kopf.Body, **kwargs: Any) -> None:
        others = _others(_capture_index(runtime, kwargs))
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
        _capture_index(runtime, kwargs)
        if event.get("type") not in ("MODIFIED", "DELETED") or runtime.scheduler is None:
            return
        metadata = body.get("metadata", {})
        owner = next(
            (
                ref
                for ref in metadata.get("ownerReferences") or ()
                if ref.get("kind") == "ApiToken" and ref.get("controller")
            ),
            None,
        )
        if owner is not None and metadata.get("namespace"):
            runtime.scheduler.schedule((metadata["namespace"], owner["name"]))

    return registry


async def _reconcile_out_of_band(runtime: Runtime, key: Hashable) -> None:
    namespace, name = cast(tuple[str, str], key)
    assert runtime.api_client is not None
    body = await api.Kube(runtime.api_client).get_apitoken(namespace, name)
    if body is None or body.get("metadata", {}).get("deletionTimestamp"):
        return
    others = _others(runtime.token_index) if runtime.token_index is not None else (lambda uid: ())
    result = await _reconciler(runtime).reconcile(body, ids_of_others=others)
    _follow_up(runtime, body, result)
    if result.retry_after is not None and runtime.scheduler is not None:
        runtime.scheduler.schedule(key, result.retry_after)


def _follow_up(runtime: Runtime, body: Any, result: Result) -> None:
    """Something due later (renewal, end of a grace period): wake the object then."""
    if result.requeue_after is not None and runtime.scheduler is not None:
        metadata = body.get("metadata", {})
        runtime.scheduler.schedule((metadata.get("namespace"), metadata.get("name")), result.requeue_after)


def _drifted(runtime: Runtime, token_ids: set[str]) -> None:
    """A listing found these tokens changed or gone: reconcile the objects that record them."""
    if runtime.token_index is None or runtime.scheduler is None:
        return
    for token_id in token_ids:
        for _, namespace, name in runtime.token_index.get(token_id, ()):
            runtime.scheduler.schedule((namespace, name))


async def _check_for_drift(runtime: Runtime) -> None:
    """Every drift interval, one listing per connection; `_drifted` hears about what changed."""
    while True:
        await asyncio.sleep(runtime.settings.drift_interval)
        for connection in runtime.connections.all() if runtime.connections else ():
            try:
                await connection.observer.refresh()
            except Exception as error:  # the next interval tries again; objects show their own errors
                logger.warning("drift check of connection %s failed: %s", connection.name, error)


def _capture_index(runtime: Runtime, kwargs: dict[str, Any]) -> TokenIndex:
    """Keep kopf's live index, and start the background work from inside a handler's context.

    kopf's Event posting lives in context variables set for handlers but not for start-up
    activities; tasks started here inherit them, so out-of-band reconciles can post Events.
    """
    index = cast(TokenIndex, kwargs["token_ids"])
    if runtime.token_index is None and runtime.scheduler is not None:
        runtime.spawn(runtime.scheduler.run())
        runtime.spawn(_check_for_drift(runtime))
    runtime.token_index = index
    return index


def _annotation(essence: Any, key: str) -> str | None:
    """An annotation of kopf's old/new essence (None on create and resume)."""
    if not isinstance(essence, dict):
        return None
    return (essence.get("metadata", {}).get("annotations") or {}).get(key)


def _reconciler(runtime: Runtime) -> Reconciler:
    if runtime.reconciler is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return runtime.reconciler


def _copy(body: kopf.Body) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


def _others(index: TokenIndex) -> Any:
    def ids_of_others(uid: str) -> Collection[str]:
        return {token_id for token_id, owners in index.items() if any(owner[0] != uid for owner in owners)}

    return ids_of_others


def _post_event(body: dict[str, Any], *, type: str, reason: str, message: str) -> None:
    kopf.event(cast(kopf.Body, body), type=type, reason=reason, message=message)
