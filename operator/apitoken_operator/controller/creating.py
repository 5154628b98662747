"""The create protocol: exactly one token per object, whatever crashes.

1. the intent (with a name unique to this attempt) is written into the status, never deferred;
2. the token is created under that marked name;
3. its secret, which exists only in memory now, is stored in the Secret (insistently; the token is
   undone if it cannot be);
4. the status records the token and clears the intent (deferred: the Secret records it already).
A crash between any two steps leaves an intent that the next reconcile settles (`plan`), and the
fail-points let the tests prove it at each one. The declared name follows in the next step
(`FinishCreate`), once the secret is safe.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from apitoken_operator.controller import calls
from apitoken_operator.controller.connections import Connection
from apitoken_operator.controller.failpoints import FailPoints
from apitoken_operator.controller.gather import Work
from apitoken_operator.controller.status_writer import Announcer, StatusWriter
from apitoken_operator.dynatrace import errors
from apitoken_operator.dynatrace.models import ApiTokenCreated
from apitoken_operator.kube import secrets
from apitoken_operator.kube.api import Kube, KubeError
from apitoken_operator.metrics import Metrics
from apitoken_operator.reconcile import actions as a
from apitoken_operator.reconcile import creation, effects
from apitoken_operator.reconcile.model import Desired
from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.reconcile.status import Health, Outcome

logger = logging.getLogger(__name__)


class StalledByKubernetes(Exception):
    """Kubernetes refused a write for a reason only the user can fix (the Secret's name, labels, ...)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Creator:
    def __init__(
        self,
        *,
        kube: Kube,
        status: StatusWriter,
        announce: Announcer,
        failpoints: FailPoints,
        clock: Callable[[], datetime],
        identity: str | None,
        conditional_intents: bool,
        secret_write_attempts: int,
        metrics: Metrics | None,
    ) -> None:
        """`identity`: this process's peering identity, recorded with each intent; `conditional_intents`:
        another replica may act on the same version (peering), so an intent goes only onto the version
        read."""
        self._kube = kube
        self._status = status
        self._announce = announce
        self._failpoints = failpoints
        self._clock = clock
        self._identity = identity
        self._conditional = conditional_intents
        self._attempts_allowed = secret_write_attempts
        self._metrics = metrics
        #: uid -> the attempt of the last create this process recorded (its own intents, over once the
        #: object's lock is free; any other is another process's, maybe still running)
        self.attempts: dict[str, str] = {}

    async def create(
        self, work: Work, action: a.CreateToken, *, desired: Desired, connection: Connection
    ) -> None:
        owner = await connection.owner()
        attempt = self.attempts[work.uid] = uuid.uuid4().hex
        request = action.request.model_copy(
            update={"name": creation.marked_name(action.request.name, attempt)}
        )
        intent = effects.intent(
            action, attempt=attempt, name=request.name, owner=owner, now=self._clock(), writer=self._identity
        )
        creating = Outcome(Health.RECONCILING, Reason.CREATING, f"creating a token: {action.why}")
        await self._status.write(
            work, {**intent, **self._status.conditions(work, creating)}, conditional=self._conditional
        )
        self._failpoints.reached("after-intent")
        try:
            created = await connection.client.create(request)
        except (errors.InvalidRequest, errors.Unauthorized, errors.Forbidden, errors.Throttled):
            await self._status.write(work, effects.CREATE_UNDONE)  # nothing was created
            raise
        except errors.DynatraceTransportError as error:
            if not error.request_sent:
                await self._status.write(work, effects.CREATE_UNDONE)
            raise
        self._failpoints.reached("after-create")
        assert created.id is not None and created.token is not None
        connection.observer.remember(calls.as_observed(created, request, owner=owner))
        await self._store_new_secret(work, desired, created, connection=connection)
        self._failpoints.reached("after-secret")
        self._failpoints.reached("before-status")
        done = effects.created(
            action, token_id=created.id, status=work.status, desired=desired, now=self._clock()
        )
        await self._status.write(work, done, defer=True)
        for token_id in effects.tokens_deleted_by(action):
            await calls.delete_token(connection, token_id, failpoints=self._failpoints)
        if action.reason is Reason.ROTATED and self._metrics is not None:
            self._metrics.rotations.inc()
        self._announce(work, effects.created_announcement(action, token_id=created.id))

    async def _store_new_secret(
        self, work: Work, desired: Desired, created: ApiTokenCreated, *, connection: Connection
    ) -> None:
        """The secret exists only in memory now: insist on storing it, and undo the token if that fails."""
        assert created.id is not None and created.token is not None
        delay = 0.2
        for attempt in range(self._attempts_allowed):
            try:
                await calls.store_secret(self._kube, work, desired, created.token, token_id=created.id)
                return
            except KubeError as error:
                refused = refusal(error, desired)
                last = attempt == self._attempts_allowed - 1
                if refused is not None or last:
                    if refused is None:
                        logger.error(
                            "%s: cannot store the new token's secret (%s); deleting token %s",
                            work.reference,
                            error,
                            created.id,
                        )
                    await calls.delete_token(connection, created.id, failpoints=self._failpoints)
                    await self._status.write(work, effects.CREATE_UNDONE, defer=refused is not None)
                    if refused is not None:  # waiting will not help: say why
                        raise refused from error
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                work.secret_bodies[desired.secret_name] = await self._kube.get_secret(
                    work.namespace, desired.secret_name
                )


def refusal(error: KubeError, desired: Desired) -> StalledByKubernetes | None:
    """A Secret write Kubernetes will refuse again whatever the wait, as the stall it means."""
    if isinstance(error, secrets.SecretNotOurs):
        return StalledByKubernetes(Reason.SECRET_NAME_TAKEN, error.message)
    if isinstance(error, secrets.SecretKeyTaken):
        return StalledByKubernetes(Reason.SECRET_KEY_TAKEN, error.message)
    if error.status == 422:
        return StalledByKubernetes(
            Reason.INVALID_SPEC, f"Secret {desired.secret_name} cannot be written: {error.message}"
        )
    return None
