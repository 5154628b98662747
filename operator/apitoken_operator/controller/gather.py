"""Read the world into a `reconcile.Input`: the ApiToken's record, its Secret(s), and Dynatrace."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from apitoken_operator.api.v1alpha1 import ApiTokenStatus, RetiringToken
from apitoken_operator.api.v1alpha1 import PendingCreate as StatusPendingCreate
from apitoken_operator.controller.connections import Connection, Connections
from apitoken_operator.controller.peers import PeerDirectory
from apitoken_operator.dynatrace.dates import DateFormatError, parse_date
from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.kube import secrets
from apitoken_operator.kube.api import Kube
from apitoken_operator.reconcile.attention import RELEASE_ANNOTATION, ROTATE_ANNOTATION
from apitoken_operator.reconcile.model import (
    Desired,
    Input,
    PendingCreate,
    Recorded,
    running_elsewhere_until,
)
from apitoken_operator.reconcile.plan import needs_token_count
from apitoken_operator.settings import OperatorSettings, PolicySettings

logger = logging.getLogger(__name__)


@dataclass
class Work:
    """One ApiToken being reconciled; `body` is kept current as the operator writes its status."""

    body: dict[str, Any]
    #: Secret bodies by name as last read or written by this reconcile (with resourceVersions for safe
    #: replaces); a reconcile reads each once, then keeps them current as it writes (it holds the
    #: object's lock, and a change by anybody else brings another reconcile)
    secret_bodies: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    #: a status patch already applied to `body` but not yet written (it goes out with the next write)
    deferred_status: dict[str, Any] = field(default_factory=dict)
    #: reasons of the Events this reconcile posted (one Event per thing that happened, not per step)
    announced: set[str] = field(default_factory=set)
    #: the finalizer being added, written alongside the first status write (awaited before any change)
    finalizing: asyncio.Task[str] | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        return self.body["metadata"]  # type: ignore[no-any-return]

    @property
    def namespace(self) -> str:
        return str(self.metadata["namespace"])

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def uid(self) -> str:
        return str(self.metadata["uid"])

    @property
    def reference(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def status(self) -> dict[str, Any]:
        return self.body.get("status") or {}

    def recorded(self, *, now: datetime) -> Recorded:
        """What the status records, read through the API's model (leniently: see `_pending`, `_retiring`)."""
        status = ApiTokenStatus.read(self.status)
        pending = status.pending_create
        return Recorded(
            token_id=status.id or None,
            secret_name=status.secret_name or None,
            pending=_pending(pending, now=now) if pending is not None and pending.model_fields_set else None,
            expiration_requested=status.requested_expiration_date or None,
            secret_available=status.secret_available is not False,
            last_rotation_request=status.last_rotation_request or None,
            retiring=tuple(_retiring(status.retiring_tokens or [], now=now)),
        )


def _retiring(items: list[RetiringToken], *, now: datetime) -> list[tuple[str, datetime]]:
    """Entries without an id are dropped; one whose date cannot be read is due now."""
    result = []
    for item in items:
        if not item.id:
            continue
        try:
            when = parse_date(item.delete_after or "", now=now)
        except DateFormatError:
            when = now  # unreadable: due now
        result.append((item.id, when))
    return result


def _pending(raw: StatusPendingCreate, *, now: datetime) -> PendingCreate:
    try:
        started = parse_date(raw.started_at or "", now=now)
    except DateFormatError:
        started = datetime.fromtimestamp(0, tz=now.tzinfo)  # unreadable: consider every candidate
    return PendingCreate(
        attempt=raw.attempt or "",
        name=raw.name or "",
        started_at=started,
        owner=raw.owner or None,
        replaces=raw.replaces or None,
        grace_seconds=raw.grace_seconds or 0,
        writer=raw.writer or None,
    )


async def gather(
    work: Work,
    *,
    desired: Desired,
    connection: Connection | None,
    kube: Kube,
    now: datetime,
    deleting: bool,
    ids_of_others: Callable[[str], Container[str]],
    fresh: bool = False,
    own_attempt: str | None = None,
    foreign_create_window: timedelta | None = None,
    identity: str | None = None,
    peers: PeerDirectory | None = None,
    credential_token_ids: frozenset[str] = frozenset(),
    default_policy: PolicySettings | None = None,
    holding: Callable[[str], int] = lambda namespace: 0,
    indexed: Callable[[], Awaitable[object]] | None = None,
    max_retiring: int | None = None,
    connection_problem: str | None = None,
) -> Input:
    """`ids_of_others(uid)`: token ids recorded by other ApiTokens, never candidates of a lost create.

    `own_attempt`: the last create this process recorded for the object; `identity`: this process's
    peering identity; `peers`: who else is alive (peering only); `credential_token_ids`: the tokens the
    operator's connections authenticate with (the object's own and the default one); `default_policy`:
    the operator's policy when the object uses the default connection; `holding(namespace)`: how many
    ApiTokens of a namespace hold a token; `indexed`: waits until `ids_of_others` and `holding` know
    every object (a restarted operator's index is complete after its first listing; only the decisions
    that read it wait); `connection_problem`: why `connection` is None.
    """
    recorded = work.recorded(now=now)
    pending = recorded.pending
    if pending is not None and pending.attempt == own_attempt:
        recorded = replace(recorded, pending=replace(pending, started_here=True))
    elif pending is not None and running_elsewhere_until(pending, window=foreign_create_window, now=now):
        # Recorded by another process: an earlier run of this one (same identity, attempt unknown here),
        # or a replica that has left the peering object, has no create under way any more.
        writer = pending.writer
        if writer and (writer == identity or (peers and await peers.gone(writer, namespace=work.namespace))):
            logger.info(
                "%s: %s, which recorded create attempt %s, is gone: settling it now",
                work.reference,
                "an earlier run of this process" if writer == identity else f"replica {writer}",
                pending.attempt,
            )
            recorded = replace(recorded, pending=replace(pending, writer_gone=True))
    waiting = running_elsewhere_until(recorded.pending, window=foreign_create_window, now=now) is not None
    if desired.secret_name not in work.secret_bodies:
        work.secret_bodies[desired.secret_name] = await kube.get_secret(work.namespace, desired.secret_name)
    secret = secrets.facts(
        desired.secret_name,
        work.secret_bodies[desired.secret_name],
        key=desired.secret_key,
        owner_uid=work.uid,
        shared=desired.secret_shared,
    )
    previous = None
    if recorded.secret_name and recorded.secret_name != desired.secret_name:
        if recorded.secret_name not in work.secret_bodies:
            work.secret_bodies[recorded.secret_name] = await kube.get_secret(
                work.namespace, recorded.secret_name
            )
        body = work.secret_bodies[recorded.secret_name]
        previous = secrets.facts(
            recorded.secret_name,
            body,
            key=desired.secret_key,
            owner_uid=work.uid,
            shared=desired.secret_shared,
        )
    token: ApiToken | None = None
    candidates: tuple[ApiToken, ...] = ()
    proven = False
    adopt = desired.adopt_token_id
    if indexed is not None and ((adopt and recorded.token_id is None) or recorded.pending):
        await indexed()
    adopt_claimed = bool(adopt and recorded.token_id is None and adopt in ids_of_others(work.uid))
    if connection is not None:
        credential_token_ids = credential_token_ids | {connection.client.token_id}
        held = secret.value_token_id if secret.owned else None
        if (
            held
            and held != recorded.token_id
            and not waiting
            and (recorded.token_id is None or recorded.pending)
        ):
            # The plan would take this id from the Secret: only once a lookup proves the value is its secret
            value = secrets.stored_secret(work.secret_bodies[desired.secret_name], key=desired.secret_key)
            proven = value is not None and await connection.observer.proves(value, token_id=held)
        held_by_proof = held if proven else None
        wanted = recorded.token_id or ((held_by_proof or adopt) if recorded.pending is None else None)
        if wanted:
            token = await connection.observer.token(wanted, max_age=0 if fresh else None)
            if token is None:  # absent from a listing is not gone: listings are late and can skip
                token = await connection.observer.confirm(wanted)
        if recorded.pending and not waiting:  # while another replica may still be creating, not yet
            tokens = await connection.observer.tokens(max_age=0)
            others = ids_of_others(work.uid)
            candidates = tuple(
                t
                for t in tokens.values()
                if made_by(t, recorded.pending, excluded=others, keep=recorded.token_id)
            )
    state = Input(
        desired=desired,
        recorded=recorded,
        secret=secret,
        now=now,
        token=token,
        previous_secret=previous,
        lost_create_candidates=candidates,
        secret_proven=proven,
        credential_token_ids=credential_token_ids,
        adopt_claimed=adopt_claimed,
        default_policy=default_policy,
        connection_problem=connection_problem,
        max_retiring=max_retiring,
        deleting=deleting,
        reference=work.reference,
        uid=work.uid,
        release_requested=(work.metadata.get("annotations") or {}).get(RELEASE_ANNOTATION) == "true",
        rotation_request=(work.metadata.get("annotations") or {}).get(ROTATE_ANNOTATION) or None,
        foreign_create_window=foreign_create_window,
    )
    if needs_token_count(state):
        if indexed is not None:
            await indexed()
        state = replace(state, namespace_holding=holding(work.namespace))
    return state


def made_by(token: ApiToken, pending: PendingCreate, *, excluded: Container[str], keep: str | None) -> bool:
    """Whether `token` is what the recorded create made: it carries the name unique to that attempt.

    An intent recorded before creates were marked has no such name; nothing can be proven its own.
    """
    if token.id is None or token.id == keep or token.id in excluded:
        return False
    return pending.marked and token.name == pending.name


@dataclass(frozen=True)
class Subject:
    """What one reconcile gathers about at every step: the object, its declaration, its connection."""

    work: Work
    desired: Desired
    #: None when it cannot be used (`problem` says why): Dynatrace is then not read
    connection: Connection | None
    deleting: bool
    #: the token ids other ApiTokens hold (never a lost create's leftovers)
    ids_of_others: Callable[[str], Container[str]] = lambda uid: ()
    problem: str | None = None


class Gatherer:
    """`gather` with what is the same for every object of this process bound once."""

    def __init__(
        self,
        *,
        kube: Kube,
        connections: Connections,
        settings: OperatorSettings,
        clock: Callable[[], datetime],
        identity: str | None,
        peers: PeerDirectory | None,
        holding: Callable[[str], int],
        attempts: Mapping[str, str],
        indexed: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """`attempts`: uid -> the last create this process recorded (see `gather`'s `own_attempt`)."""
        self._kube = kube
        self._connections = connections
        self._settings = settings
        self._clock = clock
        self._identity = identity
        self._peers = peers
        self._holding = holding
        self._indexed = indexed
        self._attempts = attempts
        window = settings.foreign_create_window
        self._window = None if window is None else timedelta(seconds=window)

    async def __call__(self, subject: Subject, *, fresh: bool = False) -> Input:
        work, desired, connection = subject.work, subject.desired, subject.connection
        default = connection is not None and connection.is_default
        return await gather(
            work,
            desired=desired,
            connection=connection,
            kube=self._kube,
            now=self._clock(),
            deleting=subject.deleting,
            ids_of_others=subject.ids_of_others,
            fresh=fresh,
            own_attempt=self._attempts.get(work.uid),
            foreign_create_window=self._window,
            identity=self._identity,
            peers=self._peers,
            credential_token_ids=await self._credential_token_ids(work, desired),
            default_policy=self._settings.policy if default else None,
            holding=self._holding,
            indexed=self._indexed,
            max_retiring=self._settings.max_retiring,
            connection_problem=subject.problem,
        )

    async def _credential_token_ids(self, work: Work, desired: Desired) -> frozenset[str]:
        """The default connection's token (the object's own connection's is added by `gather`): read
        afresh before an adoption is decided, known from the last read otherwise."""
        default = self._connections.default_token_id
        if desired.adopt_token_id and not work.status.get("id"):
            default = await self._connections.default_credential_id()
        return frozenset({default}) if default else frozenset()
