"""Carries out one planned action: a table from action type to a small function making its calls.

What each action then records and announces is decided by `reconcile.effects`; the functions here only
make the calls (Dynatrace, Secrets) and hand the effects to the status writer and the announcer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apitoken_operator.controller import calls
from apitoken_operator.controller.connections import Connection
from apitoken_operator.controller.creating import Creator
from apitoken_operator.controller.failpoints import FailPoints
from apitoken_operator.controller.gather import Work
from apitoken_operator.controller.status_writer import Announcer, StatusWriter
from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.kube import secrets
from apitoken_operator.kube.api import Kube
from apitoken_operator.reconcile import actions as a
from apitoken_operator.reconcile import effects
from apitoken_operator.reconcile.model import Desired


@dataclass(frozen=True)
class Step:
    """One action's context: the object, its declaration, its connection, the token as observed."""

    work: Work
    desired: Desired
    connection: Connection
    token: ApiToken | None


Execute = Callable[[Step, Any], Awaitable[bool]]


class Executor:
    def __init__(
        self,
        *,
        kube: Kube,
        status: StatusWriter,
        announce: Announcer,
        creator: Creator,
        failpoints: FailPoints,
        clock: Callable[[], datetime],
    ) -> None:
        self._kube = kube
        self._status = status
        self._announce = announce
        self._creator = creator
        self._failpoints = failpoints
        self._clock = clock
        #: each returns False when the world turned out to differ from the plan's input (nothing recorded;
        #: the next step gathers again)
        self._table: dict[type[a.Action], Execute] = {
            a.CreateToken: self._create,
            a.CompletePendingCreate: self._delete_tokens,
            a.AbandonPendingCreate: self._delete_tokens,
            a.DeleteRetiredToken: self._delete_tokens,
            a.DeleteToken: self._delete_tokens,
            a.RecoverIdFromSecret: self._record,
            a.AdoptToken: self._record,
            a.DropRetiring: self._record,
            a.FinishCreate: self._put,
            a.UpdateToken: self._put,
            a.WriteSecretMetadata: self._write_secret_metadata,
            a.MoveSecret: self._move_secret,
            a.DeleteSecret: self._delete_secret,
            a.LeaveSharedSecret: self._leave_shared_secret,
        }

    async def execute(self, step: Step, action: a.Action) -> None:
        work = step.work
        if work.finalizing is not None and not isinstance(action, a.CreateToken):
            # Nothing changes in Dynatrace before the finalizer is in place; a create's intent write
            # waits for it, going out beside it.
            await self._status.await_finalizer(work)
        execute = self._table.get(type(action))
        if execute is None:
            raise AssertionError(f"not an action to execute: {action!r}")
        if not await execute(step, action):
            return
        if not isinstance(action, a.CreateToken):
            patch = effects.status_patch(action, status=work.status, desired=step.desired, now=self._clock())
            if patch:
                await self._status.write(work, patch, defer=True)
            for said in effects.announcements(action, secret_name=step.desired.secret_name):
                self._announce(work, said)

    async def _create(self, step: Step, action: a.CreateToken) -> bool:
        await self._creator.create(step.work, action, desired=step.desired, connection=step.connection)
        return True

    async def _record(self, step: Step, action: a.Action) -> bool:
        return True  # the status patch is all there is to it

    async def _delete_tokens(self, step: Step, action: a.Action) -> bool:
        for token_id in effects.tokens_deleted_by(action):
            await calls.delete_token(step.connection, token_id, failpoints=self._failpoints)
        return True

    async def _put(self, step: Step, action: a.FinishCreate | a.UpdateToken) -> bool:
        return await calls.put(step.connection, step.token, action.token_id, action.update)

    async def _write_secret_metadata(self, step: Step, action: a.WriteSecretMetadata) -> bool:
        work, desired = step.work, step.desired
        token_id = work.status.get("id") or ""
        metadata = secrets.metadata(desired, token_id=token_id, reference=work.reference, apitoken=work.body)
        await self._kube.patch_secret(work.namespace, desired.secret_name, {"metadata": metadata})
        return True

    async def _move_secret(self, step: Step, action: a.MoveSecret) -> bool:
        work = step.work
        value = secrets.stored_secret(work.secret_bodies.get(action.source), key=action.source_key)
        if value is None:  # gone between gather and now; the next gather sees the truth
            return False
        await calls.store_secret(self._kube, work, step.desired, value, token_id=work.status.get("id") or "")
        if action.source != action.target and not step.desired.secret_shared:
            # a crash before this is mended by previous_secret_is_gone (which, shared, leaves only its keys)
            await calls.delete_secret(self._kube, work, action.source)
        return True

    async def _leave_shared_secret(self, step: Step, action: a.LeaveSharedSecret) -> bool:
        return await calls.leave_shared_secret(self._kube, step.work, action.name, keep=action.keep)

    async def _delete_secret(self, step: Step, action: a.DeleteSecret) -> bool:
        await calls.delete_secret(self._kube, step.work, action.name)
        return True
