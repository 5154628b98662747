"""The token's Kubernetes Secret: facts for the planner, and the bodies the operator writes.

The value is base64 in `data`; it is decoded here only to learn which token id it holds, and it is
never returned, logged or put in an exception.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from apitoken_operator.api.group import API_VERSION, KIND
from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.kube.api import KubeError
from apitoken_operator.reconcile.model import Desired, SecretFacts
from apitoken_operator.reconcile.secret_layout import TOKEN_ID_ANNOTATION, secret_annotations, secret_labels


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


def facts(name: str, body: dict[str, Any] | None, *, key: str, owner_uid: str) -> SecretFacts:
    if body is None:
        return SecretFacts(name=name)
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


def owner_reference(apitoken: dict[str, Any]) -> dict[str, Any]:
    metadata = apitoken["metadata"]
    return {
        "apiVersion": apitoken.get("apiVersion", API_VERSION),
        "kind": KIND,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(desired: Desired, *, token_id: str, reference: str, apitoken: dict[str, Any]) -> dict[str, Any]:
    return {
        "labels": secret_labels(desired),
        "annotations": secret_annotations(desired, token_id=token_id, owner=reference),
        "ownerReferences": [owner_reference(apitoken)],
    }


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
    value = base64.b64encode(secret.reveal().encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": meta,
        "data": {desired.secret_key: value},
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
