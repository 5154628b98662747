"""Gather → plan → apply, one step at a time, until the plan says the object is settled.

Exactly one token per object, whatever crashes: the intent is recorded in the status before a create
call, the Secret is written before the status, and a pending intent is settled (its token found in the
Secret, or its possible leftovers deleted) before anything else. `crashpoint()` lets tests kill the
process at each of these steps deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
import weakref
from collections.abc import Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from apitoken_operator.controller.budgets import Budgets
from apitoken_operator.controller.connections import Connection, ConnectionProblem, Connections
from apitoken_operator.controller.gather import Work, gather
from apitoken_operator.controller.peers import PeerDirectory
from apitoken_operator.dynatrace import errors
from apitoken_operator.dynatrace.dates import format_date, parse_date
from apitoken_operator.dynatrace.models import ApiToken, ApiTokenCreate, ApiTokenCreated, ApiTokenUpdate
from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.kube import secrets
from apitoken_operator.kube.api import Kube, KubeError
from apitoken_operator.metrics import Metrics
from apitoken_operator.reconcile import actions as a
from apitoken_operator.reconcile import creation
from apitoken_operator.reconcile.attention import FINALIZER
from apitoken_operator.reconcile.model import Desired, Input, SpecError
from apitoken_operator.reconcile.plan import next_renewal, plan
from apitoken_operator.reconcile.policy import (
    adoption_violation,
    grace_violation,
    policy_violation,
    quota_violation,
)
from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.reconcile.status import Health, Outcome, conditions, same_conditions, token_fields
from apitoken_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)

CRASH_ENV = "APITOKEN_OPERATOR_CRASH_AT"
#: where a create (first token, replacement, rotation) can be interrupted
CRASH_STEPS = ("after-intent", "after-create", "after-secret", "before-status")
#: where deleting a token (object deletion, replacement without grace, end of a grace period) can be
DELETE_CRASH_STEPS = ("before-token-delete", "after-token-delete")
MAX_STEPS = 10
SECRET_WRITE_ATTEMPTS = 8
TRANSIENT_RETRY = 10.0
OUTCOME_UNKNOWN_RETRY = 2.0
#: another writer changed the object between its read and a conditional write: look again soon
CONFLICT_RETRY = 0.5
#: while another replica's create may be running: how often to ask whether that replica is still alive
AWAIT_POLL = 10.0
#: a parked object is woken when its connection has room; this is only the fallback
PARKED_RETRY = 60.0


_crash_hits: dict[str, int] = {}


def crashpoint(step: str) -> None:
    """Exit at once, like kill -9, when `APITOKEN_OPERATOR_CRASH_AT` names this step (tests only).

    `step:N` exits at the step's Nth pass instead of its first, so that a run with many objects can
    be cut at a different moment each time.
    """
    wanted = os.environ.get(CRASH_ENV)
    if not wanted or not wanted.startswith(step):
        return
    name, _, nth = wanted.partition(":")
    if name != step:
        return
    _crash_hits[step] = _crash_hits.get(step, 0) + 1
    if _crash_hits[step] >= int(nth or 1):
        logging.shutdown()
        os._exit(137)


class EventSink(Protocol):
    def __call__(self, body: dict[str, Any], *, type: str, reason: str, message: str) -> None: ...


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
    ) -> None:
        """`identity`: this process's peering identity, recorded with each intent; `peers`: who else is
        alive (peering only); `budgets`: how many reconciles each connection may run at once; `holding`:
        how many ApiTokens of a namespace hold a token (for the default connection's per-namespace limit)."""
        self._budgets = budgets
        self._holding = holding
        self._identity = identity
        self._peers = peers
        self._kube = kube
        self._connections = connections
        self._settings = settings
        self._events = events
        self._metrics = metrics
        self._clock = clock
        #: per object, only while somebody holds or awaits it (10,000 idle locks would be ~2 MB)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        #: uid -> resourceVersions of this process's writes in its last reconcile: the earlier ones, and
        #: the last batch (writes that went out together, their order unknown). Bodies with an earlier
        #: version are stale; the event of the last batch comes after them.
        self._written: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}

        #: uid -> what the last reconcile acted on (see `_inputs`)
        self._acted_on: dict[str, tuple[Any, ...]] = {}
        #: uid -> the attempt of the last create this process recorded (its own intents, over once
        #: the object's lock is free; any other is another process's, maybe still running)
        self._attempts: dict[str, str] = {}

    def forget(self, uid: str) -> None:
        self._locks.pop(uid, None)
        self._written.pop(uid, None)
        self._acted_on.pop(uid, None)
        self._attempts.pop(uid, None)

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
        """The event of this process's own write, carrying nothing it has not acted on already.

        An earlier write of the same reconcile always qualifies (the event of the later one is still to
        come, carrying any change made meanwhile); the last one only if nobody changed the object's
        inputs in between. Its retry, if any, is already scheduled.
        """
        metadata = body.get("metadata") or {}
        uid = str(metadata.get("uid"))
        earlier, last = self._written.get(uid, ((), ()))
        version = metadata.get("resourceVersion")
        if version in earlier:
            return True
        return version in last and self._acted_on.get(uid) == _inputs(body)

    def _wrote(self, uid: str, *versions: str) -> None:
        earlier, last = self._written.get(uid, ((), ()))
        self._written[uid] = (earlier + last, tuple(v for v in versions if v))

    async def reconcile(
        self,
        body: dict[str, Any],
        *,
        deleting: bool = False,
        ids_of_others: Callable[[str], Collection[str]] = lambda uid: (),
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
                outcome = Outcome(Health.READY, Reason.DELETED, "the object is gone")
                return Result(outcome, released=True)
            if current.uid in self._written:  # the versions of older reconciles are not needed now
                self._written[current.uid] = ((), self._written[current.uid][1])
            # What this reconcile acts on, the finalizer it may add included: the events of its own
            # writes can arrive before it ends (when it runs from the scheduler, outside kopf's
            # per-object queue), and are echoes all the same.
            self._acted_on[current.uid] = _inputs(current.body, with_finalizer=not deleting)
            try:
                result = await self._finalized(
                    current,
                    self._reconcile(current, deleting=deleting, ids_of_others=ids_of_others, fresh=fresh),
                )
            finally:
                self._acted_on[current.uid] = _inputs(current.body)
            if result.released:
                await self._kube.remove_finalizer(
                    current.namespace,
                    current.name,
                    finalizer=FINALIZER,
                    finalizers=list(current.metadata.get("finalizers") or ()),
                )
                self.forget(current.uid)
        if self._metrics is not None and not result.parked:
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
        return result

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
            self._wrote(work.uid, version)
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
        if work.finalizing is not None:
            try:
                self._wrote(work.uid, await self._finalizer_added(work))
            except KubeError as error:
                outcome = Outcome(Health.RECONCILING, Reason.PROGRESSING, f"finalizer not added: {error}")
                return Result(outcome, retry_after=TRANSIENT_RETRY)
        return result

    @staticmethod
    async def _finalizer_added(work: Work) -> str:
        """Wait for the finalizer patch begun by `_finalized`; its resourceVersion ("" if none was due)."""
        if work.finalizing is None:
            return ""
        version = await work.finalizing
        work.finalizing = None
        work.metadata["finalizers"] = [*(work.metadata.get("finalizers") or []), FINALIZER]
        return version

    async def _current(self, work: Work) -> Work | None:
        """The body to act on: the one given, unless this process wrote the object since it was read.

        A body from a watch event or read before waiting for the lock may predate the last status write
        (an out-of-band reconcile's, say); acting on it would repeat a rotation or a replacement.
        """
        _, last = self._written.get(work.uid, ((), ()))
        if not last or work.metadata.get("resourceVersion") in last:
            return work
        body = await self._kube.get_apitoken(work.namespace, work.name)
        if body is None or body.get("metadata", {}).get("uid") != work.uid:
            return None
        return Work(body=body)

    async def _reconcile(
        self, work: Work, *, deleting: bool, ids_of_others: Callable[[str], Collection[str]], fresh: bool
    ) -> Result:
        try:
            desired = Desired.from_spec(work.body.get("spec") or {}, object_name=work.name)
        except SpecError as error:
            return await self._stall(work, Reason.INVALID_SPEC, str(error))
        # The object's Secret is read while the connection is resolved: one round trip, not two.
        reading = asyncio.ensure_future(self._kube.get_secret(work.namespace, desired.secret_name))
        try:
            connection = await self._connection(work, desired, deleting=deleting)
        except ConnectionProblem as problem:
            await _discard(reading)
            if deleting:
                return await self._deletion_without_connection(work, desired, problem.message)
            return await self._stall(
                work, problem.reason, problem.message, retry_after=self._settings.stalled_retry_delay
            )
        except BaseException:
            await _discard(reading)
            raise
        budget = (work.namespace, desired.connection_secret or "(default)")
        if self._budgets is not None and not self._budgets.try_enter(budget, key=(work.namespace, work.name)):
            await _discard(reading)
            logger.debug("%s: its connection's reconciles are all under way; parked", work.reference)
            outcome = Outcome(Health.RECONCILING, Reason.PROGRESSING, "waiting for a turn on its connection")
            return Result(outcome, retry_after=PARKED_RETRY, parked=True)
        try:
            work.secret_bodies.setdefault(desired.secret_name, await reading)
            return await self._converge(
                work, desired, connection, deleting=deleting, ids_of_others=ids_of_others, fresh=fresh
            )
        except StalledByKubernetes as stalled:
            return await self._stall(work, stalled.reason, stalled.message)
        except errors.DynatraceError as error:
            return await self._dynatrace_failure(work, desired, error, deleting=deleting)
        except KubeError as error:
            return self._kube_failure(error)
        finally:
            if self._budgets is not None:
                self._budgets.leave(budget)

    @staticmethod
    def _kube_failure(error: KubeError) -> Result:
        if error.conflict:
            outcome = Outcome(
                Health.RECONCILING, Reason.PROGRESSING, "the object changed meanwhile; looking again"
            )
            return Result(outcome, retry_after=CONFLICT_RETRY)
        outcome = Outcome(Health.RECONCILING, Reason.PROGRESSING, f"Kubernetes API error, retrying: {error}")
        return Result(outcome, retry_after=TRANSIENT_RETRY)

    async def _connection(self, work: Work, desired: Desired, *, deleting: bool) -> Connection:
        connection = await self._connections.resolve(
            namespace=work.namespace, secret_name=desired.connection_secret, user=work.uid
        )
        if connection.is_default and not deleting:
            policy = self._settings.policy
            violation = policy_violation(desired, namespace=work.namespace, policy=policy) or grace_violation(
                desired, policy=policy
            )
            if violation:
                raise ConnectionProblem(Reason.POLICY_DENIED, violation)
        return connection

    async def _converge(
        self,
        work: Work,
        desired: Desired,
        connection: Connection,
        *,
        deleting: bool,
        ids_of_others: Callable[[str], Collection[str]],
        fresh: bool = False,
    ) -> Result:
        for step_number in range(MAX_STEPS):
            now = self._clock()
            state = await gather(
                work,
                desired=desired,
                connection=connection,
                kube=self._kube,
                now=now,
                deleting=deleting,
                ids_of_others=ids_of_others,
                fresh=fresh and step_number == 0,
                own_attempt=self._attempts.get(work.uid),
                foreign_create_window=self._foreign_create_window,
                identity=self._identity,
                peers=self._peers,
                credential_token_ids=await self._credential_token_ids(work, desired),
                adoption_refused=(
                    adoption_violation(work.namespace, policy=self._settings.policy)
                    if connection.is_default and desired.adopt_token_id
                    else None
                ),
                quota_refused=(
                    quota_violation(
                        work.namespace, holding=self._holding(work.namespace), policy=self._settings.policy
                    )
                    # counting walks the token index: only for a first token, and only with a limit set
                    if connection.is_default
                    and not work.status.get("id")
                    and self._settings.policy.max_tokens_per_namespace is not None
                    else None
                ),
                max_retiring=self._settings.max_retiring,
            )
            step = plan(state)
            logger.debug("%s: %s -> %s", work.reference, step.check, type(step.action).__name__)
            action = step.action
            if isinstance(action, a.InSync):
                # A token made just now lacks the dates only a listing reports (creationDate, ...): the
                # next listing fills them in, rather than one GET per token.
                return await self._in_sync(work, state)
            if isinstance(action, a.Stall):
                return await self._stall(work, action.reason, action.message)
            if isinstance(action, a.AwaitPendingCreate):
                return self._await_other_replica(work, action, now=now)
            if isinstance(action, a.ReleaseFinalizer):
                if action.reason not in work.announced:  # "deleted token X" says it already
                    self._event(work, "Normal", action.reason, action.message)
                return Result(Outcome(Health.READY, action.reason, action.message), released=True)
            await self._apply(work, action, desired=desired, connection=connection, token=state.token)
        outcome = Outcome(Health.RECONCILING, Reason.PROGRESSING, "still converging; will continue shortly")
        return await self._settle(work, outcome, retry_after=1.0)

    async def _credential_token_ids(self, work: Work, desired: Desired) -> frozenset[str]:
        """The default connection's token (the object's own connection's is added by `gather`): read
        afresh before an adoption is decided, known from the last read otherwise."""
        default = self._connections.default_token_id
        if desired.adopt_token_id and not work.status.get("id"):
            default = await self._connections.default_credential_id()
        return frozenset({default}) if default else frozenset()

    @property
    def _foreign_create_window(self) -> timedelta | None:
        seconds = self._settings.foreign_create_window
        return None if seconds is None else timedelta(seconds=seconds)

    def _await_other_replica(self, work: Work, action: a.AwaitPendingCreate, *, now: datetime) -> Result:
        """Write nothing (the other replica is writing this object): its writes, or `until`, bring it back.

        With the peering object to ask, look again every `AWAIT_POLL` seconds: a replica that died is
        noticed once kopf would call it dead, long before `until`.
        """
        message = (
            f"another replica is creating this object's token (attempt {action.attempt}); waiting for it "
            f"to finish, until {format_date(action.until)} at the latest"
        )
        logger.info("%s: %s", work.reference, message)
        wait = max(0.0, (action.until - now).total_seconds()) + 1.0
        if self._peers is not None:
            wait = min(wait, AWAIT_POLL)
        return Result(Outcome(Health.RECONCILING, Reason.CREATING, message), retry_after=wait)

    async def _in_sync(self, work: Work, state: Input) -> Result:
        message = f"token {state.recorded.token_id} is in sync"
        if not state.recorded.secret_available:
            message = (
                f"adopted token {state.recorded.token_id} is in sync, but its secret cannot be read back "
                f"from Dynatrace: rotate it to get one into Secret {state.desired.secret_name} "
                f"(kubectl annotate apitoken {work.name} dynatrace.apitokens.io/rotate=1)"
            )
        renewal = next_renewal(state)
        if self._metrics is not None and state.token is not None:
            expires = state.token.expiration_date
            self._metrics.expiry(
                namespace=work.namespace,
                name=work.name,
                token_id=state.token.id,
                expires=parse_date(expires, now=state.now) if expires else None,
            )
        extra = {"nextRenewal": format_date(renewal) if renewal else None}
        # A renewal already due is waiting for a retiring token to go (--max-retiring): that token's own
        # time brings the object back, not the overdue renewal (which would wake it at once, for ever).
        pending_renewal = [renewal] if renewal and renewal > state.now else []
        due = [when for _, when in state.recorded.retiring] + pending_renewal
        requeue = max(0.0, (min(due) - state.now).total_seconds()) + 0.5 if due else None
        result = await self._settle(
            work, Outcome(Health.READY, Reason.READY, message), token=state.token, extra=extra
        )
        return replace(result, requeue_after=requeue)

    # --- carrying out one action ---------------------------------------------------------------------

    async def _apply(  # noqa: PLR0915 - one arm per action; each is a few lines
        self,
        work: Work,
        action: a.Action,
        *,
        desired: Desired,
        connection: Connection,
        token: ApiToken | None,
    ) -> None:
        if work.finalizing is not None and not isinstance(action, a.CreateToken):
            # Nothing changes in Dynatrace before the finalizer is in place; a create's intent write
            # waits for it, going out beside it.
            self._wrote(work.uid, await self._finalizer_added(work))
        match action:
            case a.CreateToken():
                await self._create(work, action, desired=desired, connection=connection)
            case a.CompletePendingCreate(
                token_id=token_id, replaces=replaces, extra_token_ids=extra, grace_seconds=grace
            ):
                retiring = self._retire(work, replaces, grace) if replaces and grace else None
                await self._write_status(
                    work,
                    {
                        "id": token_id,
                        "pendingCreate": None,
                        "secretName": desired.secret_name,
                        "secretAvailable": True,
                        **({"retiringTokens": retiring} if retiring else {}),
                    },
                    defer=True,
                )
                for stale in (*([replaces] if replaces and not grace else []), *extra):
                    await self._delete_token(connection, stale)
                self._event(
                    work,
                    "Normal",
                    Reason.RECOVERED,
                    f"recovered token {token_id} from the Secret after an interrupted create",
                )
            case a.AbandonPendingCreate(token_ids=token_ids, unprovable_name=unprovable):
                for token_id in token_ids:
                    await self._delete_token(connection, token_id)
                await self._write_status(work, {"pendingCreate": None}, defer=True)
                if token_ids:
                    self._event(
                        work,
                        "Normal",
                        Reason.LOST_CREATE_CLEANED,
                        f"deleted {', '.join(token_ids)}: made by a create whose answer was lost",
                    )
                if unprovable is not None:
                    self._event(
                        work,
                        "Warning",
                        Reason.LOST_CREATE_UNPROVABLE,
                        f"a create recorded by an earlier operator version lost its answer; a token named "
                        f"{unprovable!r} made by it cannot be told apart from others of that name and was "
                        "left in Dynatrace: look for one created at that time that no ApiToken records",
                    )
            case a.RecoverIdFromSecret(token_id=token_id):
                await self._write_status(
                    work, {"id": token_id, "secretName": desired.secret_name}, defer=True
                )
                self._event(
                    work, "Normal", Reason.RECOVERED, f"recovered token id {token_id} from the Secret"
                )
            case a.FinishCreate(token_id=token_id, update=update):
                await _put(connection, token, token_id, update)
            case a.UpdateToken(token_id=token_id, update=update, changed=changed):
                if not await _put(connection, token, token_id, update):
                    return
                self._event(
                    work, "Normal", Reason.UPDATED, f"token {token_id}: put back {', '.join(changed)}"
                )
            case a.WriteSecretMetadata():
                token_id = work.status.get("id") or ""
                patch = {
                    "metadata": secrets.metadata(
                        desired, token_id=token_id, reference=work.reference, apitoken=work.body
                    )
                }
                await self._kube.patch_secret(work.namespace, desired.secret_name, patch)
                self._event(
                    work,
                    "Normal",
                    Reason.SECRET_RESTORED,
                    f"Secret {desired.secret_name}: restored its {action.why}",
                )
            case a.MoveSecret(source=source, source_key=source_key, target=target):
                value = secrets.stored_secret(work.secret_bodies.get(source), key=source_key)
                if value is None:  # read between gather and now; next gather sees the truth
                    return
                await self._store_secret(work, desired, value, token_id=work.status.get("id") or "")
                if source != target:  # a crash before this is mended by previous_secret_is_gone
                    uid = ((work.secret_bodies.get(source) or {}).get("metadata") or {}).get("uid")
                    await self._kube.delete_secret(work.namespace, source, uid=uid)
                await self._write_status(work, {"secretName": target}, defer=True)
                self._event(
                    work, "Normal", Reason.SECRET_MOVED, f"moved the token's secret from {source} to {target}"
                )
            case a.DeleteSecret(name=name):
                uid = ((work.secret_bodies.get(name) or {}).get("metadata") or {}).get("uid")
                await self._kube.delete_secret(work.namespace, name, uid=uid)
            case a.AdoptToken(token_id=token_id):
                await self._write_status(
                    work,
                    {"id": token_id, "secretAvailable": False, "secretName": desired.secret_name},
                    defer=True,
                )
                self._event(
                    work,
                    "Normal",
                    Reason.ADOPTED,
                    f"adopted existing token {token_id}; its secret cannot be read back, "
                    "rotate to fill the Secret",
                )
            case a.DropRetiring(token_id=token_id):
                await self._write_status(
                    work, {"retiringTokens": _retiring_without(work, token_id) or None}, defer=True
                )
            case a.DeleteRetiredToken(token_id=token_id):
                await self._delete_token(connection, token_id)
                await self._write_status(
                    work, {"retiringTokens": _retiring_without(work, token_id) or None}, defer=True
                )
                self._event(
                    work, "Normal", Reason.RETIRED, f"deleted token {token_id}: its grace period is over"
                )
            case a.DeleteToken(token_id=token_id, reason=reason):
                await self._delete_token(connection, token_id)
                self._event(work, "Normal", reason, f"deleted token {token_id} in Dynatrace")
            case _:
                raise AssertionError(f"not an action to apply: {action!r}")

    async def _create(
        self, work: Work, action: a.CreateToken, *, desired: Desired, connection: Connection
    ) -> None:
        owner = await connection.owner()
        attempt = self._attempts[work.uid] = uuid.uuid4().hex
        # The token is made under a name unique to this attempt, and named as declared once its secret
        # is stored (`FinishCreate`): a leftover of a lost answer is then provably this attempt's.
        request = action.request.model_copy(
            update={"name": creation.marked_name(action.request.name, attempt)}
        )
        intent = {
            "attempt": attempt,
            "name": request.name,
            "startedAt": format_date(self._clock()),
            "owner": owner,
            "replaces": action.replaces,
            "graceSeconds": int(action.grace.total_seconds()) if action.grace and action.replaces else 0,
            **({"writer": self._identity} if self._identity else {}),
        }
        reconciling = Outcome(Health.RECONCILING, Reason.CREATING, f"creating a token: {action.why}")
        await self._write_status(
            work,
            {"pendingCreate": intent, **self._conditions(work, reconciling)},
            conditional=self._settings.peering,
        )
        crashpoint("after-intent")
        try:
            created = await connection.client.create(request)
        except (errors.InvalidRequest, errors.Unauthorized, errors.Forbidden, errors.Throttled) as error:
            await self._write_status(work, {"pendingCreate": None})  # nothing was created
            raise error
        except errors.DynatraceTransportError as error:
            if not error.request_sent:
                await self._write_status(work, {"pendingCreate": None})
            raise
        crashpoint("after-create")
        assert created.id is not None and created.token is not None
        connection.observer.remember(_as_observed(created, request, owner=owner))
        await self._store_new_secret(work, desired, created, connection=connection)
        crashpoint("after-secret")
        crashpoint("before-status")
        grace = int(action.grace.total_seconds()) if action.grace else 0
        retiring = self._retire(work, action.replaces, grace) if action.replaces and grace else None
        await self._write_status(
            work,
            {
                "id": created.id,
                "secretName": desired.secret_name,
                "requestedExpirationDate": desired.expiration_date,
                "pendingCreate": None,
                "secretAvailable": True,
                **({"lastRotationRequest": action.rotation_request} if action.rotation_request else {}),
                **({"retiringTokens": retiring} if retiring else {}),
            },
            defer=True,
        )
        if action.replaces and not grace:
            await self._delete_token(connection, action.replaces)
        if action.reason is Reason.ROTATED and self._metrics is not None:
            self._metrics.rotations.inc()
        self._event(
            work, "Normal", action.reason, f"{action.reason.lower()} token {created.id}: {action.why}"
        )

    def _retire(self, work: Work, token_id: str, grace_seconds: int) -> list[dict[str, str]]:
        """The status's retiring list with `token_id` added, to be deleted after its grace period."""
        after = format_date(self._clock() + timedelta(seconds=grace_seconds))
        return [*_retiring_without(work, token_id), {"id": token_id, "deleteAfter": after}]

    async def _store_new_secret(
        self, work: Work, desired: Desired, created: ApiTokenCreated, *, connection: Connection
    ) -> None:
        """The secret exists only in memory now: insist on storing it, and undo the token if that fails."""
        assert created.id is not None and created.token is not None
        delay = 0.2
        for attempt in range(SECRET_WRITE_ATTEMPTS):
            try:
                await self._store_secret(work, desired, created.token, token_id=created.id)
                return
            except KubeError as error:
                refused = _refusal(error, desired)
                if refused is not None:  # waiting will not help: undo the token, say why
                    await self._delete_token(connection, created.id)
                    await self._write_status(work, {"pendingCreate": None}, defer=True)
                    raise refused from error
                if attempt == SECRET_WRITE_ATTEMPTS - 1:
                    logger.error(
                        "%s: cannot store the new token's secret (%s); deleting token %s",
                        work.reference,
                        error,
                        created.id,
                    )
                    await self._delete_token(connection, created.id)
                    await self._write_status(work, {"pendingCreate": None})
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                work.secret_bodies[desired.secret_name] = await self._kube.get_secret(
                    work.namespace, desired.secret_name
                )

    async def _store_secret(self, work: Work, desired: Desired, value: TokenSecret, *, token_id: str) -> None:
        existing = work.secret_bodies.get(desired.secret_name)
        body = secrets.body(
            desired,
            secret=value,
            token_id=token_id,
            reference=work.reference,
            apitoken=work.body,
            existing=existing,
        )
        if existing is None:
            written = await self._kube.create_secret(work.namespace, body)
        else:
            written = await self._kube.replace_secret(work.namespace, desired.secret_name, body)
        work.secret_bodies[desired.secret_name] = written

    async def _delete_token(self, connection: Connection, token_id: str) -> None:
        crashpoint("before-token-delete")
        with contextlib.suppress(errors.NotFound):  # already gone: the goal of a delete
            await connection.client.delete(token_id)
        crashpoint("after-token-delete")
        connection.observer.forget(token_id)

    # --- outcomes --------------------------------------------------------------------------------------

    async def _dynatrace_failure(
        self, work: Work, desired: Desired, error: errors.DynatraceError, *, deleting: bool
    ) -> Result:
        message = str(error)
        if isinstance(error, errors.InvalidRequest):
            self._event(work, "Warning", Reason.REJECTED_BY_DYNATRACE, message)
            return await self._settle(work, Outcome(Health.STALLED, Reason.REJECTED_BY_DYNATRACE, message))
        if isinstance(error, errors.Unauthorized | errors.Forbidden):
            reason = Reason.UNAUTHORIZED if isinstance(error, errors.Unauthorized) else Reason.FORBIDDEN
            if deleting:
                return await self._deletion_without_connection(work, desired, message)
            self._event(work, "Warning", reason, message)
            outcome = Outcome(Health.STALLED, reason, f"the connection's token was refused: {message}")
            return await self._settle(work, outcome, retry_after=self._settings.stalled_retry_delay)
        if isinstance(error, errors.Throttled):
            wait = error.retry_after or TRANSIENT_RETRY
            outcome = Outcome(
                Health.RECONCILING, Reason.THROTTLED, f"Dynatrace is throttling; retrying in {wait:.0f} s"
            )
            return await self._settle(work, outcome, retry_after=wait)
        # A lost create answer is settled by listing, which costs little: look again soon.
        wait = OUTCOME_UNKNOWN_RETRY if isinstance(error, errors.CreateOutcomeUnknown) else TRANSIENT_RETRY
        outcome = Outcome(Health.RECONCILING, Reason.UNAVAILABLE, f"{message}; retrying in {wait:.0f} s")
        return await self._settle(work, outcome, retry_after=wait)

    async def _deletion_without_connection(self, work: Work, desired: Desired, problem: str) -> Result:
        recorded = work.recorded(now=self._clock())
        released = (work.metadata.get("annotations") or {}).get("dynatrace.apitokens.io/release") == "true"
        if (
            released
            or (desired.deletion_policy == "Orphan" and recorded.pending is None)
            or (recorded.token_id is None and recorded.pending is None)
        ):
            message = (
                f"released without contacting Dynatrace; token {recorded.token_id or '(none)'} left in place"
            )
            self._event(work, "Normal", Reason.RELEASED, message)
            return Result(Outcome(Health.READY, Reason.RELEASED, message), released=True)
        message = (
            f"cannot delete token {recorded.token_id}: {problem}. Fix the connection, or release the object "
            f"(leaving the token) with: kubectl annotate apitoken {work.name} -n {work.namespace} "
            "dynatrace.apitokens.io/release=true"
        )
        self._event(work, "Warning", Reason.DELETE_BLOCKED, message)
        outcome = Outcome(Health.STALLED, Reason.DELETE_BLOCKED, message)
        return await self._settle(work, outcome, retry_after=self._settings.stalled_retry_delay)

    async def _stall(
        self, work: Work, reason: Reason, message: str, *, retry_after: float | None = None
    ) -> Result:
        """Stalled until the user acts: a Warning Event when this becomes the object's state, not at every
        retry (the condition carries it meanwhile)."""
        outcome = Outcome(Health.STALLED, reason, message)
        if self._changes(work.status, self._conditions(work, outcome)):
            self._event(work, "Warning", reason, message)
        return await self._settle(work, outcome, retry_after=retry_after)

    async def _settle(
        self,
        work: Work,
        outcome: Outcome,
        *,
        token: ApiToken | None = None,
        retry_after: float | None = None,
        write: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> Result:
        if write:
            patch: dict[str, Any] = {**self._conditions(work, outcome), **(extra or {})}
            if token is not None:
                patch.update(
                    token_fields(
                        token,
                        reported=work.status,
                        last_used_interval=self._settings.last_used_interval,
                    )
                )
            if self._changes(work.status, patch) or work.deferred_status:
                try:
                    await self._write_status(work, patch)
                except KubeError as error:
                    logger.warning("%s: status not written: %s", work.reference, error)
                    retry_after = retry_after or TRANSIENT_RETRY
        return Result(outcome, retry_after=retry_after)

    def _conditions(self, work: Work, outcome: Outcome) -> dict[str, Any]:
        """Conditions with the generation they describe (kstatus reads both together)."""
        return {
            "observedGeneration": work.metadata.get("generation"),
            "conditions": conditions(
                outcome,
                generation=work.metadata.get("generation"),
                previous=work.status.get("conditions") or [],
                now=self._clock(),
            ),
        }

    @staticmethod
    def _changes(status: dict[str, Any], patch: dict[str, Any]) -> bool:
        for key, value in patch.items():
            if key == "conditions":
                if not same_conditions(status.get("conditions") or [], value):
                    return True
            elif status.get(key) != value:
                return True
        return False

    async def _write_status(
        self, work: Work, patch: dict[str, Any], *, defer: bool = False, conditional: bool = False
    ) -> None:
        """Patch the status, or with `defer` only record the patch, to go out with the next write.

        Deferring is for what needs no durability of its own (the Secret already records it, or the
        step is safe to repeat): it saves one Kubernetes write per step. An intent must never be deferred.
        `conditional`: only onto the version this reconcile last read or wrote (409 otherwise).
        """
        if defer:
            work.deferred_status = combine_patches(work.deferred_status, patch)
            work.body["status"] = merge_patch(work.status, patch)
            return
        patch = combine_patches(work.deferred_status, patch)
        version = work.metadata.get("resourceVersion") if conditional else None
        writing = self._kube.patch_apitoken_status(work.namespace, work.name, patch, resource_version=version)
        finalizer_version, written = await asyncio.gather(self._finalizer_added(work), writing)
        work.deferred_status = {}
        work.body["status"] = written.get("status") or {}
        version = written.get("metadata", {}).get("resourceVersion")
        work.metadata["resourceVersion"] = version
        self._wrote(work.uid, version or "", finalizer_version)

    def _event(self, work: Work, kind: str, reason: str, message: str) -> None:
        work.announced.add(str(reason))
        if kind == "Warning" or self._settings.events == "all":
            self._events(work.body, type=kind, reason=str(reason), message=message)


class StalledByKubernetes(Exception):
    """Kubernetes refused a write for a reason only the user can fix (the Secret's name, labels, ...)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _refusal(error: KubeError, desired: Desired) -> StalledByKubernetes | None:
    if isinstance(error, secrets.SecretNotOurs):
        return StalledByKubernetes(Reason.SECRET_NAME_TAKEN, error.message)
    if error.status == 422:
        return StalledByKubernetes(
            Reason.INVALID_SPEC, f"Secret {desired.secret_name} cannot be written: {error.message}"
        )
    return None


async def _put(connection: Connection, token: ApiToken | None, token_id: str, update: ApiTokenUpdate) -> bool:
    """PUT the declared name, enabled state and scopes; False when the token was deleted meanwhile (the
    next step makes another)."""
    try:
        await connection.client.update(token_id, update)
    except errors.NotFound:
        connection.observer.forget(token_id)
        return False
    assert token is not None
    changes = {"name": update.name, "enabled": update.enabled, "scopes": update.scopes}
    connection.observer.remember(token.model_copy(update=changes))
    return True


def _retiring_without(work: Work, token_id: str) -> list[dict[str, str]]:
    """The status's retiring list, `token_id` left out."""
    return [t for t in work.status.get("retiringTokens") or [] if t.get("id") != token_id]


async def _discard(task: asyncio.Future[Any]) -> None:
    """Cancel a read nobody needs any more, and collect its outcome so nothing is left unretrieved."""
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch of plain dicts, as the API server applies it (None removes a key)."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = value
    return result


def combine_patches(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One merge patch doing what `first` then `second` would (a None, "remove", is kept as such)."""
    result = dict(first)
    for key, value in second.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = combine_patches(result[key], value)
        else:
            result[key] = value
    return result


def _as_observed(created: ApiTokenCreated, request: ApiTokenCreate, *, owner: str | None) -> ApiToken:
    """What Dynatrace now holds, known without asking: a new token is enabled, owned by the caller."""
    return ApiToken(
        id=created.id,
        name=request.name,
        enabled=True,
        personal_access_token=bool(request.personal_access_token),
        owner=owner,
        expiration_date=created.expiration_date,
        scopes=list(request.scopes),
    )


def _inputs(body: Mapping[str, Any], *, with_finalizer: bool = False) -> tuple[Any, ...]:
    """What, besides its status, decides how an ApiToken is reconciled: spec, deletion, annotations."""
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    finalizers = list(metadata.get("finalizers") or ())
    if with_finalizer and FINALIZER not in finalizers:
        finalizers.append(FINALIZER)
    return (
        metadata.get("generation"),
        metadata.get("deletionTimestamp"),
        tuple(finalizers),
        tuple(sorted((k, v) for k, v in annotations.items() if k.startswith("dynatrace.apitokens.io/"))),
    )
