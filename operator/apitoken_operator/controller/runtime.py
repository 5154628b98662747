"""What the kopf handlers share, built whole at start-up, and how it turns events into reconciles.

ApiTokens are reconciled from raw watch events (see `handlers`). Everything that is not an event about
the object itself — a retry, a managed Secret edited, drift found by a listing, a renewal or a grace
period coming due — goes through one `Scheduler` as a reconcile of a freshly read body, through the
same per-object-locked `Reconciler`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Container, Coroutine, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from apitoken_operator.api.group import KIND
from apitoken_operator.controller.budgets import Budgets
from apitoken_operator.controller.connections import Connections, SharedClient
from apitoken_operator.controller.failpoints import FailPoints
from apitoken_operator.controller.heartbeat import Heartbeat
from apitoken_operator.controller.holders import TokenHolders
from apitoken_operator.controller.peers import PeerDirectory
from apitoken_operator.controller.reconciler import Reconciler, Result
from apitoken_operator.controller.scheduler import Key, ObjectKey, ParkedObject, QueuedEvent, Scheduler
from apitoken_operator.controller.standby import Standby
from apitoken_operator.dynatrace import errors
from apitoken_operator.kube import api
from apitoken_operator.kube.events import EventPoster
from apitoken_operator.metrics import Metrics
from apitoken_operator.reconcile.attention import (
    CHECK_ANNOTATION,
    FINALIZER,
    needs_reconcile,
    release_requested,
)
from apitoken_operator.reconcile.secret_layout import writers
from apitoken_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)

#: queued or parked objects whose bodies are kept (~13 MB at most); beyond, one is read when its turn comes
QUEUED_BODIES_MAX = 10_000


@dataclass(frozen=True)
class Options:
    """How `apitoken-operator run` was asked to run."""

    settings: OperatorSettings
    kubeconfig: str | None = None
    #: serve Prometheus metrics on this port (None: not served)
    metrics_port: int | None = None
    #: this process's name among kopf's peers (recorded with each intent)
    identity: str | None = None
    #: kopf's peering object (None: standalone), and whether it is the cluster-wide kind
    peering_name: str | None = None
    clusterwide: bool = True
    #: this replica's peering priority, and the namespaces whose peering objects it follows
    priority: int = 0
    namespaces: tuple[str, ...] = ()
    #: every --namespace as given, globs included (what the start-up listing covers when not clusterwide)
    namespace_patterns: tuple[str, ...] = ()
    failpoints: FailPoints = field(default_factory=FailPoints)


@dataclass
class Runtime:
    options: Options
    metrics: Metrics
    api_client: Any
    kube: api.Kube
    events: EventPoster
    connections: Connections
    budgets: Budgets
    reconciler: Reconciler
    scheduler: Scheduler
    standby: Standby
    heartbeat: Heartbeat
    #: reconciles running at once (`ReconcileSettings.max_reconciles`)
    slots: asyncio.Semaphore
    #: which ApiToken holds which token (complete once `indexed` is set)
    holders: TokenHolders = field(default_factory=TokenHolders)
    indexed: asyncio.Event = field(default_factory=asyncio.Event)
    #: token id -> when a listing saw it change while no object recorded it yet (see `drifted`)
    unclaimed: dict[str, float] = field(default_factory=dict)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    #: uids reconciled since start-up (the first event of every other object is a resume)
    seen: set[str] = field(default_factory=set)
    #: uid -> the check annotation's value when last reconciled (only objects that carry one)
    checks: dict[str, str] = field(default_factory=dict)
    #: uid -> the body of the last event queued for it, or the one it parked with on its connection's
    #: budget (compact JSON, without managedFields: ~1.3 KB), so that its turn needs no read of the
    #: object; dropped when any reconcile of the object begins (which makes it possibly older than what
    #: that reconcile saw), at most QUEUED_BODIES_MAX kept
    queued_bodies: dict[str, str] = field(default_factory=dict)

    @classmethod
    async def start(cls, options: Options, *, metrics: Metrics) -> Runtime:
        """Every service made and wired; the background work begins with the first handler call."""
        settings = options.settings
        api_client = await api.connect(options.kubeconfig)
        kube = api.Kube(api_client, on_request=metrics.on_kubernetes_request)
        events = EventPoster(kube)
        connections = Connections(kube, settings, metrics=metrics)
        pace = settings.reconcile
        runtime: Runtime

        def wake(key: Hashable) -> None:
            if isinstance(key, ObjectKey | ParkedObject):
                runtime.scheduler.schedule(key)

        budgets = Budgets(per_budget=settings.connection_reconciles, wake=wake)
        peers = (
            PeerDirectory(kube, name=options.peering_name, clusterwide=options.clusterwide)
            if options.peering_name
            else None
        )
        standby = Standby(
            kube,
            peering_name=options.peering_name,
            namespaces=() if options.clusterwide else options.namespaces,
            identity=options.identity or "",
            priority=options.priority,
        )
        holders, indexed = TokenHolders(), asyncio.Event()
        reconciler = Reconciler(
            kube=kube,
            budgets=budgets,
            holding=holders.holding,
            indexed=indexed.wait,
            connections=connections,
            settings=settings,
            events=events.post,
            metrics=metrics,
            identity=options.identity,
            peers=peers,
            failpoints=options.failpoints,
        )
        scheduler = Scheduler(
            lambda key: runtime.reconcile_scheduled(key),  # noqa: PLW0108 - runtime is made below
            concurrency=pace.scheduler_concurrency,
            gate=standby.wait_active,
            failure_retry=pace.transient_retry,
        )
        runtime = cls(
            options=options,
            metrics=metrics,
            api_client=api_client,
            kube=kube,
            events=events,
            connections=connections,
            budgets=budgets,
            reconciler=reconciler,
            scheduler=scheduler,
            standby=standby,
            heartbeat=Heartbeat(),
            slots=asyncio.Semaphore(pace.max_reconciles),
            holders=holders,
            indexed=indexed,
        )
        connections.on_change = runtime.drifted
        metrics.count_managed(holders.managed)
        if options.metrics_port is not None:
            metrics.serve(options.metrics_port)
        runtime.spawn(runtime.heartbeat.run())
        runtime.spawn(runtime.load_index())
        runtime.spawn(scheduler.run())
        runtime.spawn(runtime.check_for_drift())
        await standby.look()  # a replica started beside a running one stands by from the start
        runtime.spawn(standby.run())
        return runtime

    async def close(self) -> None:
        for task in list(self.background):
            task.cancel()
        await self.events.close()
        await self.connections.close()
        await self.api_client.close()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def forget(self, uid: str) -> None:
        self.queued_bodies.pop(uid, None)
        self.seen.discard(uid)
        self.checks.pop(uid, None)
        self.reconciler.forget(uid)
        self.spawn(self.connections.release(uid))

    # --- events --------------------------------------------------------------------------------------

    async def apitoken_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata", {})
        uid = metadata.get("uid", "")
        if event_type == "DELETED":
            self.holders.remove(uid)
            self.forget(uid)
            return
        self.holders.update(body)
        token_id = (body.get("status") or {}).get("id")
        if token_id:
            self.token_recorded(token_id, ObjectKey(metadata.get("namespace", ""), metadata.get("name", "")))
        if release_requested(body):
            await self._release(_copy(body))
            return
        if not self._worth_a_reconcile(body):
            return
        if self.reconciler.busy(uid) or self.slots.locked():
            # Queued as an event: when its turn comes (after the object's reconcile under way, if any),
            # it is looked at again (from the body kept here); by then the event may have turned out to
            # be the echo of a write whose answer had not arrived yet.
            self._keep_body(uid, body)
            self.scheduler.schedule(QueuedEvent(uid, metadata.get("namespace", ""), metadata.get("name", "")))
            return
        async with self.slots:
            await self._reconcile_body(_copy(body))

    def token_recorded(self, token_id: str, key: ObjectKey) -> None:
        """An object recorded `token_id`: a change a listing saw before that is delivered now."""
        if self.unclaimed.pop(token_id, None) is not None:
            self.scheduler.schedule(key)

    def secret_changed(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A Secret the operator wrote was edited or deleted: reconcile its ApiToken, or the ApiTokens
        writing keys into it when it is shared (out of band)."""
        if event_type not in ("MODIFIED", "DELETED"):
            return
        metadata = body.get("metadata", {})
        namespace = metadata.get("namespace")
        if not namespace:
            return
        names = {
            ref["name"]
            for ref in metadata.get("ownerReferences") or ()
            if ref.get("kind") == KIND and ref.get("controller") and ref.get("name")
        }
        for record in writers(metadata.get("annotations") or {}).values():
            writer_namespace, _, name = record.get("apitoken", "").partition("/")
            if writer_namespace == namespace and name:  # never another namespace's object
                names.add(name)
        for name in names:
            self.scheduler.schedule(ObjectKey(namespace, name))

    def _worth_a_reconcile(self, body: Mapping[str, Any]) -> bool:
        """Not the echo of the operator's own write, and something the status does not answer yet."""
        if self.reconciler.own_echo(body):
            return False
        metadata = body.get("metadata", {})
        uid = metadata.get("uid", "")
        why = needs_reconcile(body, first_sight=uid not in self.seen, last_check=self.checks.get(uid))
        if why is not None:
            logger.debug("%s/%s: reconciling: %s", metadata.get("namespace"), metadata.get("name"), why)
        return why is not None

    # --- reconciles ----------------------------------------------------------------------------------

    async def reconcile_scheduled(self, key: Key) -> None:
        """A retry or a wake-up: reconcile what the object is now, whatever event was seen last. A queued
        event waits for the object's reconcile under way, then is looked at like an event."""
        if isinstance(key, QueuedEvent):
            await self.reconciler.idle(key.uid)
        async with self.slots:
            # The queued event's body when no reconcile of the object began since (else it may be older
            # than what that one acted on): one read less per queued event, the echoes of a reconcile's
            # own writes and a restart's or a burst's parked objects alike.
            stored = self.queued_bodies.pop(key.uid, None) if not isinstance(key, ObjectKey) else None
            body = (
                json.loads(stored)
                if stored is not None
                else await self.kube.get_apitoken(key.namespace, key.name)
            )
            if body is None:
                return
            if isinstance(key, QueuedEvent) and not (
                release_requested(body) or self._worth_a_reconcile(body)
            ):
                return
            if release_requested(body):
                await self._release(body)
            elif body.get("metadata", {}).get("deletionTimestamp") is None or FINALIZER in (
                body["metadata"].get("finalizers") or ()
            ):
                await self._reconcile_body(body)

    async def _reconcile_body(self, body: dict[str, Any]) -> None:
        """One reconcile; whatever it leaves to do later (a retry, a renewal) goes to the scheduler."""
        metadata = body.get("metadata", {})
        uid, key = metadata.get("uid", ""), ObjectKey(metadata.get("namespace", ""), metadata.get("name", ""))
        self.queued_bodies.pop(uid, None)
        check = (metadata.get("annotations") or {}).get(CHECK_ANNOTATION)
        fresh = uid in self.seen and check != self.checks.get(uid)
        self.seen.add(uid)
        if check is None:
            self.checks.pop(uid, None)
        else:
            self.checks[uid] = check
        deleting = bool(metadata.get("deletionTimestamp"))
        try:
            result = await self.reconciler.reconcile(
                body, deleting=deleting, ids_of_others=self._ids_of_others, fresh=fresh
            )
        except Exception:  # a bug or an unforeseen answer: say so, and keep trying this object
            retry = self.options.settings.reconcile.transient_retry
            logger.exception("%s/%s: reconcile failed; retrying in %.0f s", key.namespace, key.name, retry)
            self.scheduler.schedule(key, retry)
            return
        self._follow_up(uid, key, result, body)

    def _follow_up(self, uid: str, key: ObjectKey, result: Result, body: Mapping[str, Any]) -> None:
        if result.released:
            self.forget(uid)
            return
        # Parked before any read: its turn can start from the same body (if the finalizer was added
        # meanwhile, the reconciler finds the body stale and reads the object then)
        if result.parked:
            self._keep_body(uid, body)
        retry_key: Key = ParkedObject(uid, key.namespace, key.name) if result.parked else key
        for delay in (result.requeue_after, result.retry_after):  # something due later, or a retry
            if delay is not None:
                self.scheduler.schedule(retry_key, delay)

    def _keep_body(self, uid: str, body: Mapping[str, Any]) -> None:
        if uid in self.queued_bodies or len(self.queued_bodies) < QUEUED_BODIES_MAX:
            self.queued_bodies[uid] = _compact(body)

    async def _release(self, body: dict[str, Any]) -> None:
        """The release annotation on an object being deleted: let it go at once, leaving its token."""
        uid = body.get("metadata", {}).get("uid", "")
        self.queued_bodies.pop(uid, None)
        if await self.reconciler.release(body):
            self.forget(uid)
        else:
            await self._reconcile_body(body)

    def _ids_of_others(self, uid: str) -> Container[str]:
        return self.holders.held_by_others(uid)

    # --- the index of held tokens --------------------------------------------------------------------

    async def load_index(self) -> None:
        """Complete the index with one paged listing of every watched ApiToken, retried until it succeeds
        (creates, adoptions and lost creates wait for it); then check what no watch event confirmed."""
        pace = self.options.settings.reconcile
        while True:
            try:
                for namespace in await self._listing_scope():
                    await self._list_into_index(namespace, page_size=pace.index_page_size)
                break
            except Exception as error:  # the API server down, refusing, timing out: it must end complete
                logger.warning("listing ApiTokens for the token index failed (retrying): %s", error)
                await asyncio.sleep(pace.transient_retry)
        self.holders.listing_done()
        self.indexed.set()
        logger.debug("token index complete: %d ApiTokens hold tokens", len(self.holders))
        await asyncio.sleep(pace.index_confirm_after)
        await self._confirm_provisional()

    async def _listing_scope(self) -> list[str | None]:
        """[None] (all namespaces) when clusterwide, else the watched namespaces (globs read as kopf does)."""
        if self.options.clusterwide:
            return [None]
        patterns = self.options.namespace_patterns or self.options.namespaces
        if all(not _is_glob(pattern) for pattern in patterns):
            return list(dict.fromkeys(patterns))
        from kopf._cogs.structs.references import match_namespace  # kopf's own rule for its globs

        names = await self.kube.namespace_names()
        return [name for name in names if any(match_namespace(cast(Any, name), p) for p in patterns)]

    async def _list_into_index(self, namespace: str | None, *, page_size: int) -> None:
        continue_token: str | None = None
        while True:
            page = await self.kube.list_apitokens(namespace, limit=page_size, continue_token=continue_token)
            self.holders.listed(page.get("items") or ())
            continue_token = (page.get("metadata") or {}).get("continue")
            if not continue_token:
                return

    async def _confirm_provisional(self) -> None:
        """Listed objects no watch event has shown since: read each, and drop those that are gone."""
        for uid, (namespace, name) in self.holders.provisional().items():
            try:
                body = await self.kube.get_apitoken(namespace, name)
            except Exception as error:  # kept: a stale entry only makes the checks stricter
                logger.warning("%s/%s: not confirmed in the token index: %s", namespace, name, error)
                continue
            exists = body is not None and body.get("metadata", {}).get("uid") == uid
            self.holders.confirm(uid, exists=exists)

    # --- drift ---------------------------------------------------------------------------------------

    def drifted(self, token_ids: set[str]) -> None:
        """A listing found these tokens changed or gone: reconcile the objects that record them.

        A token made moments ago may not be recorded yet (its object's status is written at the end of
        its reconcile): its change is kept for a while and delivered when the id is recorded.
        """
        pace = self.options.settings.reconcile
        now = time.monotonic()
        for token_id in token_ids:
            holders = self.holders.holders(token_id)
            for _, namespace, name, _role in holders:
                self.scheduler.schedule(ObjectKey(namespace, name))
            if not holders:
                self.unclaimed[token_id] = now
        if len(self.unclaimed) > pace.unclaimed_max:  # mostly tokens no object will ever record
            cutoff = now - pace.unclaimed_seconds
            self.unclaimed = {i: t for i, t in self.unclaimed.items() if t > cutoff}
            while len(self.unclaimed) > pace.unclaimed_max:
                self.unclaimed.pop(next(iter(self.unclaimed)))

    async def check_for_drift(self) -> None:
        """Every drift interval, one listing per connection, side by side, each within the interval:
        one that hangs or answers slowly delays nobody else's check."""
        while True:
            await asyncio.sleep(self.options.settings.drift_interval)
            await self.standby.wait_active()
            await asyncio.gather(*(self._drift_check(c) for c in self.connections.all()))

    async def _drift_check(self, connection: SharedClient) -> None:
        deadline = max(self.options.settings.drift_interval, 1.0)
        try:
            async with asyncio.timeout(deadline):
                await connection.observer.refresh()
        except (errors.Unauthorized, errors.Forbidden) as error:
            # The credential stopped working (revoked, expired, personal access tokens turned off): every
            # object on it is told now, by its own reconcile, rather than at its next change.
            logger.warning("drift check of connection %s refused: %s", connection.name, error)
            self.drifted(connection.observer.known_ids())
        except TimeoutError:
            logger.warning(
                "drift check of connection %s took longer than %.0f s; skipped", connection.name, deadline
            )
        except Exception as error:  # the next interval tries again; objects show their own errors
            logger.warning("drift check of connection %s failed: %s", connection.name, error)


def _is_glob(pattern: str) -> bool:
    return any(character in pattern for character in "*?[]!,")


#: never read by the operator, and together most of a body kubectl applied
_UNREAD_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"


def _compact(body: Mapping[str, Any]) -> str:
    """The body as compact JSON without what the operator never reads: `managedFields` and kubectl's
    last-applied annotation (a second copy of the spec)."""
    metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    annotations = metadata.get("annotations")
    if annotations and _UNREAD_ANNOTATION in annotations:
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != _UNREAD_ANNOTATION}
    return json.dumps({**body, "metadata": metadata}, separators=(",", ":"))


def _copy(body: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a JSON object (dicts, lists and scalars only): ~3x faster than `copy.deepcopy`,
    which keeps a memo and dispatches per type, on every event the operator reconciles from."""
    return {key: _copy_json(value) for key, value in body.items()}


def _copy_json(value: Any) -> Any:
    if type(value) is dict:
        return {key: _copy_json(item) for key, item in value.items()}
    if type(value) is list:
        return [_copy_json(item) for item in value]
    return value
