"""kopf registrations only: turn watch events into `Reconciler.reconcile` and its results into retries.

ApiTokens are reconciled from raw watch events (`kopf.on.event`), not kopf's change handlers: those
cost two extra writes per object (kopf's finalizer and its last-handled-configuration annotation)
and a round trip before the first handler runs. `reconcile.attention` decides which events matter;
the reconciler adds and removes its own finalizer. Everything that is not an event about the object
itself — a retry, a managed Secret edited, drift found by a listing, a renewal or a grace period
coming due — goes through one `Scheduler` as a reconcile of a freshly read body, through the same
per-object-locked `Reconciler`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Collection, Hashable
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from apitoken_operator.controller.budgets import Budgets
from apitoken_operator.controller.connections import Connections, SharedClient
from apitoken_operator.controller.heartbeat import Heartbeat
from apitoken_operator.controller.peers import PeerDirectory
from apitoken_operator.controller.reconciler import TRANSIENT_RETRY, Reconciler, Result
from apitoken_operator.controller.scheduler import Scheduler
from apitoken_operator.controller.standby import Standby
from apitoken_operator.dynatrace import errors
from apitoken_operator.dynatrace.secrets import install_log_masking
from apitoken_operator.kube import api
from apitoken_operator.kube.events import EventPoster
from apitoken_operator.metrics import Metrics
from apitoken_operator.reconcile.attention import (
    CHECK_ANNOTATION,
    FINALIZER,
    needs_reconcile,
    release_requested,
)
from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.reconcile.secret_layout import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from apitoken_operator.settings import OperatorSettings

#: kopf marks its storage prefix and ignores every annotation under it, so it must not be the prefix of
#: the annotations users set (rotate, check, release).
ANNOTATION_PREFIX = "kopf.dynatrace.apitokens.io"
#: kopf removes *its* finalizer from objects no change handler needs: never let that be ours
KOPF_FINALIZER = "kopf.dynatrace.apitokens.io/unused"
RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
MAX_RECONCILES = 64
#: changes of tokens no object records (yet) are kept this long, and this many at most
UNCLAIMED_SECONDS = 600.0
UNCLAIMED_MAX = 10_000
#: marks a scheduler key as a queued watch event (rather than a retry or a wake-up)
EVENT = "event"
logger = logging.getLogger(__name__)

#: token id -> (uid, namespace, name, role) of the ApiTokens holding it; role "id" (the object's token)
#: or "retiring" (rotated out, in its grace period)
TokenIndex = kopf.Index[str, tuple[str, str, str, str]]


@dataclass
class Runtime:
    """What the handlers share, made at start-up (the API client needs the running event loop)."""

    settings: OperatorSettings
    kubeconfig: str | None = None
    #: serve Prometheus metrics on this port (None: not served)
    metrics_port: int | None = None
    #: this process's name among kopf's peers (recorded with each intent)
    identity: str | None = None
    #: kopf's peering object (None: standalone), and whether it is the cluster-wide kind
    peering_name: str | None = None
    clusterwide: bool = True
    metrics: Metrics = field(default_factory=Metrics)
    reconciler: Reconciler | None = None
    connections: Connections | None = None
    scheduler: Scheduler | None = None
    budgets: Budgets | None = None
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    #: token id -> when a listing saw it change while no object recorded it yet (see `_drifted`)
    unclaimed: dict[str, float] = field(default_factory=dict)
    api_client: Any = None
    events: EventPoster | None = None
    #: follows kopf's peering pause, for the work kopf does not pause (the scheduler, drift checks)
    standby: Standby = field(default_factory=Standby)
    #: kopf's live index of recorded token ids, captured from the first handler call
    token_index: TokenIndex | None = None
    background: set[asyncio.Task[None]] = field(default_factory=set)
    #: uids reconciled since start-up (the first event of every other object is a resume)
    seen: set[str] = field(default_factory=set)
    #: uid -> the check annotation's value when last reconciled (only objects that carry one)
    checks: dict[str, str] = field(default_factory=dict)
    #: reconciles running at once. An event that finds them all taken queues its object in the
    #: scheduler (a key, read afresh when its turn comes) instead of waiting: a waiting kopf worker
    #: holds ~30 KB, and a burst of 10,000 creates held 8,000 of them (336 MB). The API server is the
    #: bottleneck long before this limit is.
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_RECONCILES))

    def forget(self, uid: str) -> None:
        self.seen.discard(uid)
        self.checks.pop(uid, None)
        if self.reconciler is not None:
            self.reconciler.forget(uid)
        if self.connections is not None:
            self.spawn(self.connections.release(uid))

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:  # noqa: PLR0915 - registrations only
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        install_log_masking()
        settings.persistence.finalizer = KOPF_FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        settings.posting.enabled = False  # Events go through kube.events; log lines are never posted
        settings.posting.loggers = False
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.queueing.idle_timeout = 1.0  # a per-object worker with nothing to do goes soon
        settings.execution.max_workers = 4  # for sync code only; our handlers are async
        # Watch only the Secrets the operator manages, filtered by the API server: the operator never
        # receives (or keeps in memory) the data of anybody else's Secrets.
        settings.watching.label_selectors["v1", "secrets"] = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
        runtime.api_client = await api.connect(runtime.kubeconfig)
        kube = api.Kube(runtime.api_client)
        runtime.events = EventPoster(kube)
        runtime.connections = Connections(kube, runtime.settings, metrics=runtime.metrics)
        runtime.connections.on_change = lambda ids: _drifted(runtime, ids)
        runtime.budgets = Budgets(
            per_budget=runtime.settings.connection_reconciles,
            wake=lambda key: _retry(runtime, key, 0.0),
        )
        runtime.reconciler = Reconciler(
            kube=kube,
            budgets=runtime.budgets,
            holding=lambda namespace: _holding(runtime.token_index, namespace),
            connections=runtime.connections,
            settings=runtime.settings,
            events=runtime.events.post,
            metrics=runtime.metrics,
            identity=runtime.identity,
            peers=(
                PeerDirectory(kube, name=runtime.peering_name, clusterwide=runtime.clusterwide)
                if runtime.peering_name
                else None
            ),
        )
        runtime.metrics.count_managed(lambda: _managed(runtime.token_index))
        if runtime.metrics_port is not None:
            runtime.metrics.serve(runtime.metrics_port)
        runtime.spawn(runtime.heartbeat.run())
        runtime.standby.install()
        runtime.scheduler = Scheduler(
            lambda key: _reconcile_out_of_band(runtime, key), gate=runtime.standby.wait_active
        )

    @kopf.on.probe(id="event_loop_lag_seconds", registry=registry)
    async def event_loop_lag(**_: Any) -> float:
        """Fails the liveness probe when the event loop falls far behind (see controller.heartbeat)."""
        problem = runtime.heartbeat.problem(max_lag=runtime.settings.liveness_max_lag)
        if problem is not None:
            raise kopf.PermanentError(problem)
        return round(runtime.heartbeat.lag, 3)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        runtime.standby.uninstall()
        for task in list(runtime.background):
            task.cancel()
        if runtime.events is not None:
            await runtime.events.close()
        if runtime.connections is not None:
            await runtime.connections.close()
        if runtime.api_client is not None:
            await runtime.api_client.close()

    @kopf.index(*RESOURCE, id="token_ids", registry=registry)
    async def token_ids(  # async: kopf runs a plain function in a thread, for every event
        status: kopf.Status, uid: str | None, namespace: str | None, name: str | None, **_: Any
    ) -> dict[str, tuple[str, str, str, str]] | None:
        """Every token an object holds: its own and those retiring after a rotation (none is another's)."""
        owner = (uid or "", namespace or "", name or "")
        held = {item.get("id"): (*owner, "retiring") for item in status.get("retiringTokens") or ()}
        if status.get("id"):
            held[status["id"]] = (*owner, "id")
            if runtime.unclaimed.pop(status["id"], None) is not None and runtime.scheduler is not None:
                runtime.scheduler.schedule((namespace, name))  # a change seen before the id was recorded
        return {token_id: holder for token_id, holder in held.items() if token_id} or None

    @kopf.on.event(*RESOURCE, id="reconcile", registry=registry)
    async def apitoken_event(event: kopf.RawEvent, body: kopf.Body, **kwargs: Any) -> None:
        _capture_index(runtime, kwargs)
        uid = body.get("metadata", {}).get("uid", "")
        if event.get("type") == "DELETED":
            runtime.forget(uid)
            return
        if release_requested(body):
            await _release(runtime, _copy(body))
            return
        if _worth_a_reconcile(runtime, body):
            metadata = body.get("metadata", {})
            busy = _reconciler(runtime).busy(uid)
            if (busy or runtime.slots.locked()) and runtime.scheduler is not None:
                # Queued as an event: when its turn comes (after the object's reconcile under way, if
                # any), the object is read and looked at again; by then the event may have turned out
                # to be the echo of a write whose answer had not arrived yet.
                runtime.scheduler.schedule((EVENT, uid, metadata.get("namespace"), metadata.get("name")))
                return
            async with runtime.slots:
                await _reconcile_body(runtime, _copy(body))

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


def _worth_a_reconcile(runtime: Runtime, body: Any) -> bool:
    """Not the echo of the operator's own write, and something the status does not answer yet."""
    if _reconciler(runtime).own_echo(body):
        return False
    metadata = body.get("metadata", {})
    uid = metadata.get("uid", "")
    why = needs_reconcile(body, first_sight=uid not in runtime.seen, last_check=runtime.checks.get(uid))
    if why is not None:
        logger.debug("%s/%s: reconciling: %s", metadata.get("namespace"), metadata.get("name"), why)
    return why is not None


async def _reconcile_out_of_band(runtime: Runtime, key: Hashable) -> None:
    """A retry or a wake-up: reconcile what the object is now, whatever event was seen last.

    A queued event (`EVENT`, uid, ns, name) waits for the object's reconcile under way, then is looked at
    like an event, so that one which turned out to be an echo costs a read, not a reconcile.
    """
    parts = cast(tuple[str, ...], key)
    event, (namespace, name) = parts[0] == EVENT, parts[-2:]
    assert runtime.api_client is not None
    if event:
        await _reconciler(runtime).idle(parts[1])
    async with runtime.slots:
        body = await api.Kube(runtime.api_client).get_apitoken(namespace, name)
        if body is not None and (not event or release_requested(body) or _worth_a_reconcile(runtime, body)):
            await _reconcile_fresh(runtime, body)


async def _reconcile_fresh(runtime: Runtime, body: dict[str, Any]) -> None:
    if release_requested(body):
        await _release(runtime, body)
    elif body.get("metadata", {}).get("deletionTimestamp") is None or FINALIZER in (
        body["metadata"].get("finalizers") or ()
    ):
        await _reconcile_body(runtime, body)


async def _reconcile_body(runtime: Runtime, body: dict[str, Any]) -> None:
    """One reconcile; whatever it leaves to do later (a retry, a renewal) goes to the scheduler."""
    metadata = body.get("metadata", {})
    uid, key = metadata.get("uid", ""), (metadata.get("namespace"), metadata.get("name"))
    check = (metadata.get("annotations") or {}).get(CHECK_ANNOTATION)
    fresh = uid in runtime.seen and check != runtime.checks.get(uid)
    runtime.seen.add(uid)
    if check is None:
        runtime.checks.pop(uid, None)
    else:
        runtime.checks[uid] = check
    others = _others(runtime.token_index) if runtime.token_index is not None else (lambda uid: ())
    deleting = bool(metadata.get("deletionTimestamp"))
    try:
        result = await _reconciler(runtime).reconcile(
            body, deleting=deleting, ids_of_others=others, fresh=fresh
        )
    except Exception:  # a bug or an unforeseen answer: say so, and keep trying this object
        logger.exception("%s/%s: reconcile failed; retrying in %.0f s", *key, TRANSIENT_RETRY)
        _retry(runtime, key, TRANSIENT_RETRY)
        return
    if result.released:
        runtime.forget(uid)
        return
    _follow_up(runtime, body, result)
    if result.retry_after is not None:
        _retry(runtime, key, result.retry_after)


def _retry(runtime: Runtime, key: Hashable, delay: float) -> None:
    if runtime.scheduler is not None:
        runtime.scheduler.schedule(key, delay)


async def _release(runtime: Runtime, body: dict[str, Any]) -> None:
    """The release annotation on an object being deleted lets it go at once, leaving its token."""
    metadata = body.get("metadata", {})
    token_id = body.get("status", {}).get("id") or "(none)"
    assert runtime.events is not None
    runtime.events.post(
        body,
        type="Normal",
        reason=Reason.RELEASED,
        message=f"released by annotation; token {token_id} left in Dynatrace",
    )
    assert runtime.api_client is not None
    await api.Kube(runtime.api_client).remove_finalizer(
        metadata["namespace"],
        metadata["name"],
        finalizer=FINALIZER,
        finalizers=list(metadata.get("finalizers") or ()),
    )
    runtime.forget(metadata.get("uid", ""))


def _follow_up(runtime: Runtime, body: Any, result: Result) -> None:
    """Something due later (renewal, end of a grace period): wake the object then."""
    if result.requeue_after is not None and runtime.scheduler is not None:
        metadata = body.get("metadata", {})
        runtime.scheduler.schedule((metadata.get("namespace"), metadata.get("name")), result.requeue_after)


def _drifted(runtime: Runtime, token_ids: set[str]) -> None:
    """A listing found these tokens changed or gone: reconcile the objects that record them.

    A token made moments ago may not be recorded yet (its object's status is written at the end of its
    reconcile): its change is kept for a while and delivered when the id is recorded (`token_ids`).
    """
    if runtime.token_index is None or runtime.scheduler is None:
        return
    now = time.monotonic()
    for token_id in token_ids:
        holders = runtime.token_index.get(token_id, ())
        for _, namespace, name, _role in holders:
            runtime.scheduler.schedule((namespace, name))
        if not holders:
            runtime.unclaimed[token_id] = now
    if len(runtime.unclaimed) > UNCLAIMED_MAX:  # mostly tokens no object will ever record
        cutoff = now - UNCLAIMED_SECONDS
        runtime.unclaimed = {i: t for i, t in runtime.unclaimed.items() if t > cutoff}
        while len(runtime.unclaimed) > UNCLAIMED_MAX:
            runtime.unclaimed.pop(next(iter(runtime.unclaimed)))


async def _check_for_drift(runtime: Runtime) -> None:
    """Every drift interval, one listing per connection; `_drifted` hears about what changed.

    The connections are listed side by side, each within the interval: one that hangs or answers
    slowly delays nobody else's check.
    """
    while True:
        await asyncio.sleep(runtime.settings.drift_interval)
        await runtime.standby.wait_active()
        connections = runtime.connections.all() if runtime.connections else []
        await asyncio.gather(*(_drift_check(runtime, c) for c in connections))


async def _drift_check(runtime: Runtime, connection: SharedClient) -> None:
    deadline = max(runtime.settings.drift_interval, 1.0)
    try:
        async with asyncio.timeout(deadline):
            await connection.observer.refresh()
    except (errors.Unauthorized, errors.Forbidden) as error:
        # The credential stopped working (revoked, expired, personal access tokens turned off): every
        # object on it is told now, by its own reconcile, rather than at its next change.
        logger.warning("drift check of connection %s refused: %s", connection.name, error)
        _drifted(runtime, connection.observer.known_ids())
    except TimeoutError:
        logger.warning(
            "drift check of connection %s took longer than %.0f s; skipped", connection.name, deadline
        )
    except Exception as error:  # the next interval tries again; objects show their own errors
        logger.warning("drift check of connection %s failed: %s", connection.name, error)


def _capture_index(runtime: Runtime, kwargs: dict[str, Any]) -> TokenIndex:
    """Keep kopf's live index, and start the background work once the first handler runs (the
    scheduler and the drift check need the index to find objects)."""
    index = cast(TokenIndex, kwargs["token_ids"])
    if runtime.token_index is None and runtime.scheduler is not None:
        runtime.spawn(runtime.scheduler.run())
        runtime.spawn(_check_for_drift(runtime))
    runtime.token_index = index
    return index


def _reconciler(runtime: Runtime) -> Reconciler:
    if runtime.reconciler is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return runtime.reconciler


def _copy(body: kopf.Body) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


def _holding(index: TokenIndex | None, namespace: str) -> int:
    """ApiTokens of `namespace` that hold a token (their own, not one retiring)."""
    if index is None:
        return 0
    return len({h[0] for holders in index.values() for h in holders if h[1] == namespace and h[3] == "id"})


def _managed(index: TokenIndex | None) -> int:
    """Tokens in use by an object (those retiring after a rotation are not counted)."""
    if index is None:
        return 0
    return sum(1 for holders in index.values() if any(holder[3] == "id" for holder in holders))


def _others(index: TokenIndex) -> Any:
    def ids_of_others(uid: str) -> Collection[str]:
        return {token_id for token_id, owners in index.items() if any(owner[0] != uid for owner in owners)}

    return ids_of_others
