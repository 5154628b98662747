"""Gather → plan → execute, one step at a time, until the plan says the object is settled.

This module holds the loop and what surrounds it: one reconcile per object at a time (a lock each),
the finalizer, the connection and its budget, and turning the plan's terminal answers and any error
into the object's outcome. What to do is `reconcile.plan`'s; what it records is `reconcile.effects`';
how it is done is `controller.executor`'s (the create protocol: `controller.creating`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Container, Coroutine, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from apitoken_operator.controller.budgets import Budgets
from apitoken_operator.controller.connections import ConnectionProblem, Connections
from apitoken_operator.controller.creating import Creator, StalledByKubernetes
from apitoken_operator.controller.echoes import EchoFilter
from apitoken_operator.controller.executor import Executor, Step
from apitoken_operator.controller.failpoints import FailPoints
from apitoken_operator.controller.gather import Gatherer, Subject, Work
from apitoken_operator.controller.peers import PeerDirectory
from apitoken_operator.controller.scheduler import ParkedObject
from apitoken_operator.controller.status_writer import Announcer, EventSink, StatusWriter, changes
from apitoken_operator.dynatrace import errors
from apitoken_operator.dynatrace.dates import parse_date
from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.kube.api import Kube, KubeError
from apitoken_operator.metrics import Metrics
from apitoken_operator.reconcile import actions as a
from apitoken_operator.reconcile import effects
from apitoken_operator.reconcile.attention import FINALIZER
from apitoken_operator.reconcile.effects import Announcement, Failure
from apitoken_operator.reconcile.model import Desired, Input, SpecError
from apitoken_operator.reconcile.plan import admission, plan
from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.reconcile.status import Health, Outcome
from apitoken_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    #: seconds after which to try again; None when settled (or waiting for the user)
    retry_after: float | None = None
    released: bool = False
    #: settled, but something is due later (a renewal, the end of a grace period): look again then
    requeue_after: float | None = None
    #: its connection's budget was spent: nothing was done, and the object is woken when a place frees
    parked: bool = False


class Reconciler:
    def __init__(
        self,
        *,
        kube: Kube,
        connections: Connections,
        settings: OperatorSettings,
        events: EventSink,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        identity: str | None = None,
        peers: PeerDirectory | None = None,
        budgets: Budgets | None = None,
        holding: Callable[[str], int] = lambda namespace: 0,
        indexed: Callable[[], Awaitable[object]] | None = None,
        failpoints: FailPoints | None = None,
    ) -> None:
        """`identity`: this process's peering identity, recorded with each intent; `peers`: who else is
        alive (peering only); `budgets`: how many reconciles each connection may run at once; `holding`:
        how many ApiTokens of a namespace hold a token (for the default connection's per-namespace limit);
        `indexed`: waits until `holding` and `ids_of_others` know every object (None: they always do);
        `failpoints`: where a test may kill the process (none armed by default)."""
        self._kube = kube
        self._connections = connections
        self._settings = settings
        self._pace = settings.reconcile
        self._metrics = metrics
        self._clock = clock
        self._peers = peers
        self._budgets = budgets or Budgets(per_budget=settings.connection_reconciles)
        self._echoes = EchoFilter()
        self._status = StatusWriter(
            kube, echoes=self._echoes, clock=clock, last_used_interval=settings.last_used_interval
        )
        self._announce = Announcer(events, normal_events=settings.events == "all")
        failpoints = failpoints or FailPoints()
        self._creator = Creator(
            kube=kube,
            status=self._status,
            announce=self._announce,
            failpoints=failpoints,
            clock=clock,
            identity=identity,
            conditional_intents=settings.peering,
            secret_write_attempts=self._pace.secret_write_attempts,
            metrics=metrics,
        )
        self._gather = Gatherer(
            kube=kube,
            connections=connections,
            settings=settings,
            clock=clock,
            identity=identity,
            peers=peers,
            holding=holding,
            indexed=indexed,
            attempts=self._creator.attempts,
        )
        self._executor = Executor(
            kube=kube,
            status=self._status,
            announce=self._announce,
            creator=self._creator,
            failpoints=failpoints,
            clock=clock,
        )
        #: per object, only while somebody holds or awaits it (10,000 idle locks would be ~2 MB)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @property
    def echoes(self) -> EchoFilter:
        return self._echoes

    def forget(self, uid: str) -> None:
        self._locks.pop(uid, None)
        self._echoes.forget(uid)
        self._creator.attempts.pop(uid, None)

    def busy(self, uid: str) -> bool:
        """A reconcile of this object is under way."""
        lock = self._locks.get(uid)
        return lock is not None and lock.locked()

    async def idle(self, uid: str) -> None:
        """Wait until no reconcile of this object is under way."""
        lock = self._locks.get(uid)
        if lock is not None and lock.locked():
            async with lock:
                pass

    def own_echo(self, body: Mapping[str, Any]) -> bool:
        return self._echoes.own_echo(body)

    async def reconcile(
        self,
        body: dict[str, Any],
        *,
        deleting: bool = False,
        ids_of_others: Callable[[str], Container[str]] = lambda uid: (),
        fresh: bool = False,
    ) -> Result:
        """Bring one ApiToken in line; objects are reconciled one at a time each, many at once overall.

        `ids_of_others(uid)`: the token ids other ApiTokens hold, never taken for a lost create's leftovers.
        """
        work = Work(body=body)
        lock = self._locks.get(work.uid)
        if lock is None:
            lock = self._locks[work.uid] = asyncio.Lock()
        async with lock:
            current = await self._current(work)
            if current is None:  # gone while waiting for the lock: nothing left to do
                return Result(Outcome(Health.READY, Reason.DELETED, "the object is gone"), released=True)
            self._echoes.begin(current.uid, current.body, adding_finalizer=not deleting)
            try:
                result = await self._finalized(
                    current,
                    self._reconcile(current, deleting=deleting, ids_of_others=ids_of_others, fresh=fresh),
                )
            finally:
                self._echoes.end(current.uid, current.body)
            if result.released:
                await self._let_go(current)
        self._count(work, result)
        return result

    async def release(self, body: dict[str, Any]) -> bool:
        """Let a deleted object go at once if the plan says so without Dynatrace (the release annotation).

        Without the object's lock: a reconcile stuck on a hanging connection, the usual reason to
        release, must not hold it up. False when the plan wants more (then reconcile it).
        """
        work = Work(body=body)
        try:
            desired = Desired.from_spec(work.body.get("spec") or {}, object_name=work.name)
        except SpecError:  # a release needs nothing from the spec
            desired = Desired(name=work.name, scopes=frozenset(), secret_name=work.name)
        state = await self._gather(
            Subject(work, desired, None, deleting=True, problem="released by annotation")
        )
        action = plan(state).action
        if not (isinstance(action, a.ReleaseFinalizer) and action.reason is Reason.RELEASED):
            return False
        self._announce(work, Announcement("Normal", action.reason, action.message))
        await self._let_go(work)
        self._count(work, Result(Outcome(Health.READY, action.reason, action.message), released=True))
        return True

    async def _let_go(self, work: Work) -> None:
        finalizers = list(work.metadata.get("finalizers") or ())
        await self._kube.remove_finalizer(
            work.namespace, work.name, finalizer=FINALIZER, finalizers=finalizers
        )
        self.forget(work.uid)

    def _count(self, work: Work, result: Result) -> None:
        if self._metrics is None or result.parked:
            return
        if result.released:
            self._metrics.forget(namespace=work.namespace, name=work.name)
        else:
            outcome = result.outcome
            self._metrics.reconciled(
                namespace=work.namespace,
                name=work.name,
                health=outcome.health.value,
                reason=outcome.reason.value,
            )

    async def _finalized(self, work: Work, reconciling: Coroutine[Any, Any, Result]) -> Result:
        """Run a reconcile while the finalizer (if missing) is added beside it, never after a change.

        The finalizer's patch goes out together with the first status write (an intent comes before
        any create), saving a round trip; every write and Dynatrace change awaits it first.
        """
        finalizers = work.metadata.get("finalizers") or []
        missing = FINALIZER not in finalizers and not work.metadata.get("deletionTimestamp")
        if missing and self._settings.peering:
            # Another replica may be reconciling this object from the same version: the finalizer goes
            # first, onto the version read, so that every later conditional write is decided on it.
            try:
                version = await self._kube.add_finalizer(
                    work.namespace,
                    work.name,
                    finalizer=FINALIZER,
                    finalizers=list(finalizers),
                    resource_version=work.metadata.get("resourceVersion"),
                )
            except KubeError as error:
                reconciling.close()
                return self._kube_failure(error)
            work.metadata["finalizers"] = [*finalizers, FINALIZER]
            work.metadata["resourceVersion"] = version
            self._echoes.wrote(work.uid, version)
        elif missing:
            work.finalizing = asyncio.create_task(
                self._kube.add_finalizer(
                    work.namespace, work.name, finalizer=FINALIZER, finalizers=list(finalizers)
                )
            )
        try:
            result = await reconciling
        except BaseException:
            if work.finalizing is not None:
                await _discard(work.finalizing)
            raise
        try:
            await self._status.await_finalizer(work)
        except KubeError as error:
            outcome = Outcome(Health.RECONCILING, Reason.PROGRESSING, f"finalizer not added: {error}")
            return Result(outcome, retry_after=self._pace.transient_retry)
        return result

    async def _current(self, work: Work) -> Work | None:
        """The body to act on: the one given, unless this process wrote the object since it was read."""
        if not self._echoes.stale(work.body):
            return work
        body = await self._kube.get_apitoken(work.namespace, work.name)
        if body is None or body.get("metadata", {}).get("uid") != work.uid:
            return None
        return Work(body=body)

    async def _reconcile(
        self, work: Work, *, deleting: bool, ids_of_others: Callable[[str], Container[str]], fresh: bool
    ) -> Result:
        try:
            desired = Desired.from_spec(work.body.get("spec") or {}, object_name=work.name)
        except SpecError as error:
            return await self._stall(work, Reason.INVALID_SPEC, str(error))
        # The budget first, before any read: a read cancelled when the object parks costs its connection
        # to the API server (and a TLS handshake for the next request).
        budget = (work.namespace, desired.connection_secret or "(default)")
        if not self._budgets.try_enter(budget, key=ParkedObject(work.uid, work.namespace, work.name)):
            logger.debug("%s: its connection's reconciles are all under way; parked", work.reference)
            outcome = Outcome(Health.RECONCILING, Reason.PROGRESSING, "waiting for a turn on its connection")
            return Result(outcome, retry_after=self._pace.parked_retry, parked=True)
        try:
            return await self._reconcile_in_budget(
                work, desired, deleting=deleting, ids_of_others=ids_of_others, fresh=fresh
            )
        finally:
            self._budgets.leave(budget)

    async def _reconcile_in_budget(
        self,
        work: Work,
        desired: Desired,
        *,
        deleting: bool,
        ids_of_others: Callable[[str], Container[str]],
        fresh: bool,
    ) -> Result:
        stalled_retry = self._settings.stalled_retry_delay
        # The object's Secret is read while the connection is resolved: one round trip, not two.
        reading = asyncio.ensure_future(self._kube.get_secret(work.namespace, desired.secret_name))
        try:
            connection = await self._connections.resolve(
                namespace=work.namespace, secret_name=desired.connection_secret, user=work.uid
            )
            refused = (
                admission(desired, namespace=work.namespace, policy=self._settings.policy)
                if connection.is_default and not deleting
                else None
            )
            if refused is not None:
                raise ConnectionProblem(Reason.POLICY_DENIED, refused)
        except ConnectionProblem as problem:
            await _discard(reading)
            if deleting:
                return await self._converge(
                    Subject(work, desired, None, deleting=True, problem=problem.message)
                )
            return await self._stall(work, problem.reason, problem.message, retry_after=stalled_retry)
        except BaseException:
            await _discard(reading)
            raise
        try:
            work.secret_bodies.setdefault(desired.secret_name, await reading)
            subject = Subject(work, desired, connection, deleting=deleting, ids_of_others=ids_of_others)
            return await self._converge(subject, fresh=fresh)
        except StalledByKubernetes as stalled:
            return await self._stall(work, stalled.reason, stalled.message)
        except errors.DynatraceError as error:
            failure = effects.dynatrace_failure(error, settings=self._pace, stalled_retry=stalled_retry)
            if failure.connection_refused and deleting:
                return await self._converge(Subject(work, desired, None, deleting=True, problem=str(error)))
            return await self._fail(work, failure)
        except KubeError as error:
            return self._kube_failure(error)

    def _kube_failure(self, error: KubeError) -> Result:
        failure = effects.kubernetes_failure(str(error), conflict=error.conflict, settings=self._pace)
        return Result(failure.outcome, retry_after=failure.retry_after)

    async def _converge(self, subject: Subject, *, fresh: bool = False) -> Result:
        """Step until settled. Without a connection (`problem` says why) only what needs no Dynatrace."""
        work, desired, connection = subject.work, subject.desired, subject.connection
        for step_number in range(self._pace.max_steps):
            state = await self._gather(subject, fresh=fresh and step_number == 0)
            step = plan(state)
            logger.debug("%s: %s -> %s", work.reference, step.check, type(step.action).__name__)
            action = step.action
            match action:
                case a.InSync():
                    return await self._in_sync(work, state)
                case a.Stall(reason=reason, message=message, recheck=recheck):
                    retry = self._settings.stalled_retry_delay if recheck else None
                    return await self._stall(work, reason, message, retry_after=retry)
                case a.AwaitPendingCreate():
                    poll = self._pace.await_poll if self._peers is not None else None
                    waiting = effects.awaiting(action, now=state.now, poll=poll)
                    logger.info("%s: %s", work.reference, waiting.outcome.message)
                    return Result(waiting.outcome, retry_after=waiting.retry_after)
                case a.ReleaseFinalizer(reason=reason, message=message):
                    if reason not in work.announced:  # "deleted token X" says it already
                        self._announce(work, Announcement("Normal", reason, message))
                    return Result(Outcome(Health.READY, reason, message), released=True)
            if connection is None:
                raise AssertionError(f"{step.check} asked for {action!r} without a connection")
            await self._executor.execute(Step(work, desired, connection, state.token), action)
        outcome = Outcome(Health.RECONCILING, Reason.PROGRESSING, "still converging; will continue shortly")
        return await self._settle(work, outcome, retry_after=1.0)

    async def _in_sync(self, work: Work, state: Input) -> Result:
        if self._metrics is not None and state.token is not None:
            expires = state.token.expiration_date
            self._metrics.expiry(
                namespace=work.namespace,
                name=work.name,
                token_id=state.token.id,
                expires=parse_date(expires, now=state.now) if expires else None,
            )
        settled = effects.in_sync(state)
        result = await self._settle(work, settled.outcome, token=state.token, extra=settled.extra)
        return replace(result, requeue_after=settled.requeue_after)

    async def _fail(self, work: Work, failure: Failure) -> Result:
        outcome = failure.outcome
        if outcome.health is Health.STALLED:
            return await self._stall(work, outcome.reason, outcome.message, retry_after=failure.retry_after)
        return await self._settle(work, outcome, retry_after=failure.retry_after)

    async def _stall(
        self, work: Work, reason: Reason, message: str, *, retry_after: float | None = None
    ) -> Result:
        """Stalled until the user acts: a Warning Event when this becomes the object's state, not at every
        retry (the condition carries it meanwhile)."""
        outcome = Outcome(Health.STALLED, reason, message)
        if changes(work.status, self._status.conditions(work, outcome)):
            self._announce(work, Announcement("Warning", reason, message))
        return await self._settle(work, outcome, retry_after=retry_after)

    async def _settle(
        self,
        work: Work,
        outcome: Outcome,
        *,
        token: ApiToken | None = None,
        retry_after: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Result:
        if not await self._status.settle(work, outcome, token=token, extra=extra):
            retry_after = retry_after or self._pace.transient_retry
        return Result(outcome, retry_after=retry_after)


async def _discard(task: asyncio.Future[Any]) -> None:
    """Cancel a read nobody needs any more, and collect its outcome so nothing is left unretrieved."""
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
