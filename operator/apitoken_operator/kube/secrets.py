"""The token's Kubernetes Secret: facts for the planner, and the bodies the operator writes.

The value is base64 in `data`; it is decoded here only to learn which token id it holds, and it is
never returned, logged or put in an exception.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from apitoken_operator.api.group import API_VERSION, KIND
from apitoken_operator.api.v1alpha1 import SHARED_LABEL
from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.kube.api import KubeError
from apitoken_operator.reconcile.model import Desired, SecretFacts
from apitoken_operator.reconcile.secret_layout import (
    TOKEN_ID_ANNOTATION,
    secret_annotations,
    secret_labels,
    writer_annotation,
    writers,
)


class SecretNotOurs(KubeError):
    """The Secret exists and is not controlled by this ApiToken (another ApiToken's, or anybody's): it is
    never overwritten. Seen when two writers race for one name: the loser's create meets a Secret that
    was not there when it looked."""

    def __init__(self, name: str) -> None:
        super().__init__(
            409, f"Secret {name!r} already exists and is not managed by this ApiToken; it is not overwritten"
        )


def controlled_by(body: dict[str, Any], owner_uid: str) -> bool:
    """Whether the Secret's controller ownerReference is the ApiToken with this uid."""
    refs = (body.get("metadata") or {}).get("ownerReferences") or ()
    return any(ref.get("uid") == owner_uid and ref.get("controller") for ref in refs)


def facts(
    name: str, body: dict[str, Any] | None, *, key: str, owner_uid: str, shared: bool = False
) -> SecretFacts:
    if body is None:
        return SecretFacts(name=name, shared=shared)
    if shared:
        return _shared_facts(name, body, key=key, owner_uid=owner_uid)
    metadata = body.get("metadata") or {}
    data = body.get("data") or {}
    owned = controlled_by(body, owner_uid)
    return SecretFacts(
        name=name,
        exists=True,
        owned=owned,
        value_token_id=_stored_token_id(data.get(key)),
        annotated_token_id=(metadata.get("annotations") or {}).get(TOKEN_ID_ANNOTATION),
        labels=dict(metadata.get("labels") or {}),
        annotations=dict(metadata.get("annotations") or {}),
        keys=frozenset(data),
        token_ids={k: i for k, v in data.items() if (i := _stored_token_id(v)) is not None},
    )


def _shared_facts(name: str, body: dict[str, Any], *, key: str, owner_uid: str) -> SecretFacts:
    """A shared Secret as one of its writers sees it: only the keys it writes count as its own."""
    metadata = body.get("metadata") or {}
    data = body.get("data") or {}
    annotations = dict(metadata.get("annotations") or {})
    records = writers(annotations)
    mine = frozenset(k for k, record in records.items() if record.get("uid") == owner_uid)
    other = records.get(key)
    if key in mine:
        key_writer = None
    elif other is not None:
        key_writer = other.get("apitoken") or "another ApiToken"
    else:
        key_writer = "somebody (the key holds data no ApiToken wrote)" if key in data else None
    return SecretFacts(
        name=name,
        exists=True,
        owned=bool(mine),
        value_token_id=_stored_token_id(data.get(key)) if key in mine else None,
        annotated_token_id=records[key].get("tokenId") if key in mine else None,
        labels=dict(metadata.get("labels") or {}),
        annotations=annotations,
        keys=frozenset(data),
        token_ids={k: i for k in mine if (i := _stored_token_id(data.get(k))) is not None},
        shared=True,
        joinable=(metadata.get("labels") or {}).get(SHARED_LABEL) == "true",
        key_writer=key_writer,
        written_keys=mine,
    )


def stored_secret(body: dict[str, Any] | None, *, key: str) -> TokenSecret | None:
    """The stored token (for a Secret move); wrapped at once so it cannot be printed."""
    if body is None:
        return None
    encoded = (body.get("data") or {}).get(key)
    if not encoded:
        return None
    try:
        return TokenSecret(base64.b64decode(encoded).decode())
    except (binascii.Error, UnicodeDecodeError):
        return None


def owner_reference(apitoken: dict[str, Any], *, controller: bool = True) -> dict[str, Any]:
    metadata = apitoken["metadata"]
    return {
        "apiVersion": apitoken.get("apiVersion", API_VERSION),
        "kind": KIND,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": controller,
        "blockOwnerDeletion": controller,
    }


def metadata(desired: Desired, *, token_id: str, reference: str, apitoken: dict[str, Any]) -> dict[str, Any]:
    """The labels and annotations the Secret must carry (and, owned, its controller reference)."""
    uid = apitoken["metadata"]["uid"]
    meta: dict[str, Any] = {
        "labels": secret_labels(desired),
        "annotations": secret_annotations(desired, token_id=token_id, owner=reference, uid=uid),
    }
    if not desired.secret_shared:  # a shared Secret's references are set when a key is written
        meta["ownerReferences"] = [owner_reference(apitoken)]
    return meta


def body(
    desired: Desired,
    *,
    secret: TokenSecret,
    token_id: str,
    reference: str,
    apitoken: dict[str, Any],
    existing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole Secret holding only the token (no surrounding whitespace) under the desired key.

    With `existing`, its resourceVersion and unrelated labels/annotations are kept, so a replace is a
    compare-and-swap and does not wipe what others put there. An `existing` Secret this ApiToken does not
    control raises `SecretNotOurs`: somebody else's Secret is never replaced.
    """
    if existing is not None and not controlled_by(existing, apitoken["metadata"]["uid"]):
        raise SecretNotOurs(desired.secret_name)
    meta = metadata(desired, token_id=token_id, reference=reference, apitoken=apitoken)
    meta["name"] = desired.secret_name
    meta["namespace"] = apitoken["metadata"]["namespace"]
    if existing is not None:
        old = existing.get("metadata") or {}
        meta["resourceVersion"] = old.get("resourceVersion")
        meta["labels"] = {**(old.get("labels") or {}), **meta["labels"]}
        meta["annotations"] = {**(old.get("annotations") or {}), **meta["annotations"]}
    return _secret(meta, key=desired.secret_key, value=secret)


def _secret(metadata: dict[str, Any], *, key: str, value: TokenSecret) -> dict[str, Any]:
    """A whole Secret holding `value` under `key` (base64 in `data`)."""
    encoded = base64.b64encode(value.reveal().encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata,
        "data": {key: encoded},
    }


def _stored_token_id(encoded: str | None) -> str | None:
    if not encoded:
        return None
    try:
        token = TokenSecret(base64.b64decode(encoded).decode())
    except (binascii.Error, UnicodeDecodeError):
        return None
    token_id = token.token_id
    return None if token_id.startswith("<") else token_id


# --- shared Secrets (spec.secret.mode Shared) -----------------------------------------------------------


class SecretKeyTaken(KubeError):
    """A shared Secret's key is another writer's, or the Secret does not let ApiTokens in."""

    def __init__(self, message: str) -> None:
        super().__init__(409, message)


def shared_write(
    desired: Desired,
    *,
    secret: TokenSecret,
    token_id: str,
    reference: str,
    apitoken: dict[str, Any],
    existing: dict[str, Any] | None,
) -> dict[str, Any]:
    """A new shared Secret holding this key, or a merge patch writing the key into `existing`.

    The patch carries the version read, so it is a compare-and-swap; it touches only this key, its
    writer annotation and the labels, never another writer's. A Secret the operator made (an ApiToken
    owns it) gets this ApiToken among its owners, so it goes with the last of them; one it joined, never.
    """
    uid = apitoken["metadata"]["uid"]
    meta = metadata(desired, token_id=token_id, reference=reference, apitoken=apitoken)
    if existing is None:
        meta.update(name=desired.secret_name, namespace=apitoken["metadata"]["namespace"])
        meta["ownerReferences"] = [owner_reference(apitoken, controller=False)]
        return _secret(meta, key=desired.secret_key, value=secret)
    seen = _shared_facts(desired.secret_name, existing, key=desired.secret_key, owner_uid=uid)
    if seen.key_writer is not None:
        raise SecretKeyTaken(
            f"key {desired.secret_key!r} of Secret {desired.secret_name!r} is written by {seen.key_writer}; "
            "a key has one writer"
        )
    if not seen.joinable and not seen.owned:
        raise SecretKeyTaken(f"Secret {desired.secret_name!r} exists and does not let ApiTokens in")
    old = existing.get("metadata") or {}
    meta["resourceVersion"] = old.get("resourceVersion")
    refs = list(old.get("ownerReferences") or ())
    made_by_operator = any(ref.get("kind") == KIND for ref in refs)
    if made_by_operator and not any(ref.get("uid") == uid for ref in refs):
        meta["ownerReferences"] = [*refs, owner_reference(apitoken, controller=False)]
    value = base64.b64encode(secret.reveal().encode()).decode()
    return {"metadata": meta, "data": {desired.secret_key: value}}


def shared_leave(
    existing: dict[str, Any], *, owner_uid: str, keep: str | None = None
) -> dict[str, Any] | None:
    """A merge patch removing the keys this ApiToken writes (but `keep`) from a shared Secret, onto the
    version read; None when it writes none. Its owner reference stays: Kubernetes drops it (or the
    Secret, with its last owner) once the ApiToken is gone."""
    old = existing.get("metadata") or {}
    records = writers(old.get("annotations") or {})
    leaving = [k for k, record in records.items() if record.get("uid") == owner_uid and k != keep]
    if not leaving:
        return None
    return {
        "metadata": {
            "resourceVersion": old.get("resourceVersion"),
            "annotations": {writer_annotation(k): None for k in leaving},
        },
        "data": dict.fromkeys(leaving),
    }
