"""The calls actions are made of, each telling the connection's observer what it changed, so that the
next listing (which may have begun before the call) is not taken to undo it."""

from __future__ import annotations

import contextlib

from apitoken_operator.controller.connections import Connection
from apitoken_operator.controller.failpoints import FailPoints
from apitoken_operator.controller.gather import Work
from apitoken_operator.dynatrace import errors
from apitoken_operator.dynatrace.models import ApiToken, ApiTokenCreate, ApiTokenCreated, ApiTokenUpdate
from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.kube import secrets
from apitoken_operator.kube.api import Kube
from apitoken_operator.reconcile.model import Desired


async def delete_token(connection: Connection, token_id: str, *, failpoints: FailPoints) -> None:
    failpoints.reached("before-token-delete")
    with contextlib.suppress(errors.NotFound):  # already gone: the goal of a delete
        await connection.client.delete(token_id)
    failpoints.reached("after-token-delete")
    connection.observer.forget(token_id)


async def put(connection: Connection, token: ApiToken | None, token_id: str, update: ApiTokenUpdate) -> bool:
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


async def store_secret(
    kube: Kube, work: Work, desired: Desired, value: TokenSecret, *, token_id: str
) -> None:
    """Write the object's Secret (create, or replace onto the version last read); a shared one gets only
    this ApiToken's key written, onto the version last read."""
    existing = work.secret_bodies.get(desired.secret_name)
    build = secrets.shared_write if desired.secret_shared else secrets.body
    write = build(
        desired,
        secret=value,
        token_id=token_id,
        reference=work.reference,
        apitoken=work.body,
        existing=existing,
    )
    if existing is None:
        written = await kube.create_secret(work.namespace, write)
    elif desired.secret_shared:  # a merge patch of its key
        written = await kube.patch_secret(work.namespace, desired.secret_name, write)
    else:
        written = await kube.replace_secret(work.namespace, desired.secret_name, write)
    work.secret_bodies[desired.secret_name] = written


async def leave_shared_secret(kube: Kube, work: Work, name: str, *, keep: str | None) -> bool:
    """Remove this ApiToken's keys (but `keep`) from a shared Secret; False if there were none."""
    existing = work.secret_bodies.get(name)
    patch = secrets.shared_leave(existing, owner_uid=work.uid, keep=keep) if existing is not None else None
    if patch is None:
        return False
    work.secret_bodies[name] = await kube.patch_secret(work.namespace, name, patch)
    return True


async def delete_secret(kube: Kube, work: Work, name: str) -> None:
    """Delete a Secret this reconcile read, only that very one (its uid as precondition)."""
    uid = ((work.secret_bodies.get(name) or {}).get("metadata") or {}).get("uid")
    await kube.delete_secret(work.namespace, name, uid=uid)


def as_observed(created: ApiTokenCreated, request: ApiTokenCreate, *, owner: str | None) -> ApiToken:
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
