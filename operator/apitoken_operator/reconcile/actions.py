"""What `plan` can ask for. Each action is one step; the caller carries it out, gathers again and re-plans."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from apitoken_operator.dynatrace.models import ApiTokenCreate, ApiTokenUpdate
from apitoken_operator.reconcile.reasons import Reason


@dataclass(frozen=True)
class CreateToken:
    """Record the intent, create the token, write the Secret, then the status.

    A new token is always enabled; `enabled: false` is applied by the next step's update, after the
    secret is safe. `replaces`: the id of a token to delete once the new secret is in the Secret.
    """

    request: ApiTokenCreate
    reason: Reason
    replaces: str | None = None
    why: str = ""
    #: keep the replaced token working this long after the switch (rotation); None deletes it at once
    grace: timedelta | None = None
    #: the rotate annotation's value this create answers
    rotation_request: str | None = None


@dataclass(frozen=True)
class CompletePendingCreate:
    """The Secret already holds the token of a pending create: record its id (and retire `replaces`)."""

    token_id: str
    replaces: str | None
    extra_token_ids: tuple[str, ...] = ()
    grace_seconds: int = 0


@dataclass(frozen=True)
class AwaitPendingCreate:
    """Another replica recorded a create and may still be making it: touch nothing until it ends.

    Settling the intent now could delete (or fail to find) a token that is still being made, and a
    second create would leave one of the two behind. The other replica's own writes bring the object
    back; `until` is when its create has surely ended, when the intent is settled like a lost one.
    """

    attempt: str
    until: datetime


@dataclass(frozen=True)
class AbandonPendingCreate:
    """A pending create's answer was lost: delete what it provably made, then forget it."""

    token_ids: tuple[str, ...]
    #: the name of an intent recorded before creates were marked (an earlier version): what it may have
    #: made cannot be told apart from others' tokens, so nothing is deleted and people are told
    unprovable_name: str | None = None


@dataclass(frozen=True)
class RecoverIdFromSecret:
    """The status lost the token id, but the Secret (owned, annotated, value matching) still has it."""

    token_id: str


@dataclass(frozen=True)
class AdoptToken:
    """Take over an existing token by id: record it; its secret cannot be read back."""

    token_id: str


@dataclass(frozen=True)
class DeleteRetiredToken:
    """A rotated-out token's grace period is over."""

    token_id: str


@dataclass(frozen=True)
class DropRetiring:
    """A retiring entry names the token in use (a status edited by hand): drop the entry, keep the token."""

    token_id: str


@dataclass(frozen=True)
class FinishCreate:
    """A new token's secret is stored: give it its declared name and enabled state (one update).

    Until then it carried the marked name that proves it is this create's (`reconcile.creation`).
    """

    token_id: str
    update: ApiTokenUpdate


@dataclass(frozen=True)
class UpdateToken:
    token_id: str
    update: ApiTokenUpdate
    changed: tuple[str, ...]


@dataclass(frozen=True)
class WriteSecretMetadata:
    """Put back labels, annotations or the owner reference of the Secret (its value is intact)."""

    why: str


@dataclass(frozen=True)
class MoveSecret:
    """spec.secret name or key changed: copy the value to the new place; an old Secret is deleted next."""

    source: str
    source_key: str
    target: str


@dataclass(frozen=True)
class DeleteSecret:
    name: str


@dataclass(frozen=True)
class LeaveSharedSecret:
    """Remove the keys this ApiToken writes from a shared Secret (but `keep`); the others' stay."""

    name: str
    keep: str | None = None


@dataclass(frozen=True)
class DeleteToken:
    token_id: str
    reason: Reason


@dataclass(frozen=True)
class ReleaseFinalizer:
    """Deletion is complete (or released): let Kubernetes remove the object."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class Stall:
    """Nothing can be done until the user changes something."""

    reason: Reason
    message: str
    #: what must change is outside the object (a connection Secret, Dynatrace): look again now and then
    recheck: bool = False


@dataclass(frozen=True)
class InSync:
    """Nothing to do: the token, the Secret and the declaration agree."""


Action = (
    CreateToken
    | CompletePendingCreate
    | AwaitPendingCreate
    | AbandonPendingCreate
    | RecoverIdFromSecret
    | AdoptToken
    | DeleteRetiredToken
    | DropRetiring
    | FinishCreate
    | UpdateToken
    | WriteSecretMetadata
    | MoveSecret
    | DeleteSecret
    | LeaveSharedSecret
    | DeleteToken
    | ReleaseFinalizer
    | Stall
    | InSync
)
TERMINAL = (ReleaseFinalizer, Stall, InSync, AwaitPendingCreate)
