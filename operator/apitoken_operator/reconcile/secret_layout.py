"""What the operator's Secret must carry besides the value: the labels and annotations it manages.

An owned Secret (the default) names its one token and ApiToken in two annotations. A shared Secret
(spec.secret.mode Shared) holds several ApiTokens' keys, so each key names its writer in an annotation
of its own, `writer.<key>`: writers never touch each other's annotations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from apitoken_operator.api.group import qualified
from apitoken_operator.api.v1alpha1 import SHARED_LABEL
from apitoken_operator.reconcile.model import Desired

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "dynatrace-apitoken-operator"
TOKEN_ID_ANNOTATION = qualified("token-id")
OWNER_ANNOTATION = qualified("apitoken")
WRITER_PREFIX = qualified("writer.")


def secret_labels(desired: Desired) -> dict[str, str]:
    shared = {SHARED_LABEL: "true"} if desired.secret_shared else {}
    return {**desired.secret_labels, MANAGED_BY_LABEL: MANAGED_BY_VALUE, **shared}


def secret_annotations(desired: Desired, *, token_id: str, owner: str, uid: str = "") -> dict[str, str]:
    if desired.secret_shared:
        writer = writer_value(owner=owner, uid=uid, token_id=token_id)
        return {**desired.secret_annotations, writer_annotation(desired.secret_key): writer}
    return {**desired.secret_annotations, TOKEN_ID_ANNOTATION: token_id, OWNER_ANNOTATION: owner}


def writer_annotation(key: str) -> str:
    return WRITER_PREFIX + key


def writer_value(*, owner: str, uid: str, token_id: str) -> str:
    """Who writes a shared Secret's key: the ApiToken (`namespace/name`, uid) and the token it holds."""
    return json.dumps(
        {"apitoken": owner, "uid": uid, "tokenId": token_id}, sort_keys=True, separators=(",", ":")
    )


def writers(annotations: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """key -> its writer record, from a shared Secret's annotations (unreadable records left out)."""
    found: dict[str, dict[str, str]] = {}
    for name, value in annotations.items():
        if not name.startswith(WRITER_PREFIX):
            continue
        try:
            record = json.loads(value)
        except ValueError:
            continue
        if isinstance(record, dict):
            found[name[len(WRITER_PREFIX) :]] = {k: str(v) for k, v in record.items()}
    return found
