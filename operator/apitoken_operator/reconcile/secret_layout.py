"""What the operator's Secret must carry besides the value: the labels and annotations it manages."""

from __future__ import annotations

from apitoken_operator.api.group import qualified
from apitoken_operator.reconcile.model import Desired

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "dynatrace-apitoken-operator"
TOKEN_ID_ANNOTATION = qualified("token-id")
OWNER_ANNOTATION = qualified("apitoken")


def secret_labels(desired: Desired) -> dict[str, str]:
    return {**desired.secret_labels, MANAGED_BY_LABEL: MANAGED_BY_VALUE}


def secret_annotations(desired: Desired, *, token_id: str, owner: str) -> dict[str, str]:
    return {**desired.secret_annotations, TOKEN_ID_ANNOTATION: token_id, OWNER_ANNOTATION: owner}
