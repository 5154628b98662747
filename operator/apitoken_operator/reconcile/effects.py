"""What carrying out an action, or failing to, means for the ApiToken: its status patch, Events, outcome.

Pure, like `plan`: values in, values out, no I/O. The executor makes the calls an action needs and then
writes what these functions say, so plan and effects can be checked together without a cluster
(`tests/unit/test_plan_properties.py` carries a create out on paper and re-plans).

A status patch is a JSON merge patch of the status (camelCase keys, None removes a key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from apitoken_operator.api import v1alpha1
from apitoken_operator.api.v1alpha1 import ApiTokenStatus, PendingCreate, RetiringToken
from apitoken_operator.dynatrace import errors
from apitoken_operator.dynatrace.dates import format_date
from apitoken_operator.reconcile import actions as a
from apitoken_operator.reconcile.attention import ROTATE_ANNOTATION
from apitoken_operator.reconcile.model import Desired, Input
from apitoken_operator.reconcile.plan import next_renewal
from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.reconcile.status import Health, Outcome
from apitoken_operator.settings import ReconcileSettings

StatusPatch = dict[str, Any]


@dataclass(frozen=True)
class Announcement:
    """An Event to post about the object: something that happened, said once."""

    kind: str  # "Normal" or "Warning"
    reason: Reason
    message: str


@dataclass(frozen=True)
class Failure:
    """What an error means for the object: the outcome to show and when to look again."""

    outcome: Outcome
    retry_after: float | None = None
    #: a Warning Event says it (besides the condition)
    announce: bool = False
    #: the connection's credential was refused: an object being deleted is planned without Dynatrace
    connection_refused: bool = False


# --- status patches ------------------------------------------------------------------------------------


def retiring_without(status: Mapping[str, Any], token_id: str) -> list[RetiringToken]:
    """The status's retiring list, `token_id` left out."""
    retiring = ApiTokenStatus.read(status).retiring_tokens or []
    return [entry for entry in retiring if entry.id != token_id]


def retiring_with(
    status: Mapping[str, Any], token_id: str, *, grace_seconds: int, now: datetime
) -> list[RetiringToken]:
    """The status's retiring list with `token_id` added, to be deleted once its grace period is over."""
    after = format_date(now + timedelta(seconds=grace_seconds))
    return [*retiring_without(status, token_id), RetiringToken(id=token_id, delete_after=after)]


def status_patch(
    action: a.Action, *, status: Mapping[str, Any], desired: Desired, now: datetime
) -> StatusPatch:
    """The status an action leaves once its calls are made (empty: it changes nothing recorded).

    A create is a protocol of its own, with a patch before its call (`intent`) and one after (`created`).
    """
    match action:
        case a.CompletePendingCreate(token_id=token_id, replaces=replaces, grace_seconds=grace):
            written = ApiTokenStatus(
                id=token_id, pending_create=None, secret_name=desired.secret_name, secret_available=True
            )
            if replaces and grace:
                written.retiring_tokens = retiring_with(status, replaces, grace_seconds=grace, now=now)
            return v1alpha1.status_patch(written)
        case a.AbandonPendingCreate():
            return dict(CREATE_UNDONE)
        case a.RecoverIdFromSecret(token_id=token_id):
            return v1alpha1.status_patch(ApiTokenStatus(id=token_id, secret_name=desired.secret_name))
        case a.AdoptToken(token_id=token_id):
            adopted = ApiTokenStatus(id=token_id, secret_available=False, secret_name=desired.secret_name)
            return v1alpha1.status_patch(adopted)
        case a.DropRetiring(token_id=token_id) | a.DeleteRetiredToken(token_id=token_id):
            left = retiring_without(status, token_id) or None
            return v1alpha1.status_patch(ApiTokenStatus(retiring_tokens=left))
        case a.MoveSecret(target=target):
            return v1alpha1.status_patch(ApiTokenStatus(secret_name=target))
    return {}


def intent(
    action: a.CreateToken, *, attempt: str, name: str, owner: str | None, now: datetime, writer: str | None
) -> StatusPatch:
    """The record of a create about to be sent (`name`: the marked name unique to `attempt`); it is
    written, never deferred, before the call, so that a lost answer can be settled."""
    record = PendingCreate(
        attempt=attempt,
        name=name,
        started_at=format_date(now),
        owner=owner,
        replaces=action.replaces,
        grace_seconds=int(action.grace.total_seconds()) if action.grace and action.replaces else 0,
    )
    if writer:
        record.writer = writer
    return v1alpha1.status_patch(ApiTokenStatus(pending_create=record))


def created(
    action: a.CreateToken, *, token_id: str, status: Mapping[str, Any], desired: Desired, now: datetime
) -> StatusPatch:
    """The status once a new token's secret is stored: the token recorded, the one it replaces retiring."""
    written = ApiTokenStatus(
        id=token_id,
        secret_name=desired.secret_name,
        requested_expiration_date=desired.expiration_date,
        pending_create=None,
        secret_available=True,
    )
    if action.rotation_request:
        written.last_rotation_request = action.rotation_request
    grace = int(action.grace.total_seconds()) if action.grace else 0
    if action.replaces and grace:
        written.retiring_tokens = retiring_with(status, action.replaces, grace_seconds=grace, now=now)
    return v1alpha1.status_patch(written)


#: what a create that certainly made nothing leaves: the intent cleared
CREATE_UNDONE: StatusPatch = v1alpha1.status_patch(ApiTokenStatus(pending_create=None))


def tokens_deleted_by(action: a.Action) -> tuple[str, ...]:
    """The tokens an action deletes in Dynatrace (a create's replaced token only without a grace period)."""
    match action:
        case a.CompletePendingCreate(replaces=replaces, extra_token_ids=extra, grace_seconds=grace):
            return (*([replaces] if replaces and not grace else []), *extra)
        case a.AbandonPendingCreate(token_ids=token_ids):
            return token_ids
        case a.DeleteRetiredToken(token_id=token_id) | a.DeleteToken(token_id=token_id):
            return (token_id,)
        case a.CreateToken(replaces=replaces, grace=grace) if replaces and not grace:
            return (replaces,)
    return ()


# --- Events --------------------------------------------------------------------------------------------


def announcements(action: a.Action, *, secret_name: str = "") -> tuple[Announcement, ...]:
    """The Events an action posts once carried out (a create's: `created_announcement`)."""
    match action:
        case a.CompletePendingCreate(token_id=token_id):
            message = f"recovered token {token_id} from the Secret after an interrupted create"
            return (Announcement("Normal", Reason.RECOVERED, message),)
        case a.AbandonPendingCreate(token_ids=token_ids, unprovable_name=unprovable):
            said = []
            if token_ids:
                message = f"deleted {', '.join(token_ids)}: made by a create whose answer was lost"
                said.append(Announcement("Normal", Reason.LOST_CREATE_CLEANED, message))
            if unprovable is not None:
                message = (
                    f"a create recorded by an earlier operator version lost its answer; a token named "
                    f"{unprovable!r} made by it cannot be told apart from others of that name and was "
                    "left in Dynatrace: look for one created at that time that no ApiToken records"
                )
                said.append(Announcement("Warning", Reason.LOST_CREATE_UNPROVABLE, message))
            return tuple(said)
        case a.RecoverIdFromSecret(token_id=token_id):
            return (
                Announcement("Normal", Reason.RECOVERED, f"recovered token id {token_id} from the Secret"),
            )
        case a.UpdateToken(token_id=token_id, changed=changed):
            message = f"token {token_id}: put back {', '.join(changed)}"
            return (Announcement("Normal", Reason.UPDATED, message),)
        case a.WriteSecretMetadata(why=why):
            message = f"Secret {secret_name}: restored its {why}"
            return (Announcement("Normal", Reason.SECRET_RESTORED, message),)
        case a.MoveSecret(source=source, target=target):
            message = f"moved the token's secret from {source} to {target}"
            return (Announcement("Normal", Reason.SECRET_MOVED, message),)
        case a.LeaveSharedSecret(name=name):
            message = f"removed its key from shared Secret {name} (the other ApiTokens' keys stay)"
            return (Announcement("Normal", Reason.SECRET_KEY_REMOVED, message),)
        case a.AdoptToken(token_id=token_id):
            message = (
                f"adopted existing token {token_id}; its secret cannot be read back, "
                "rotate to fill the Secret"
            )
            return (Announcement("Normal", Reason.ADOPTED, message),)
        case a.DeleteRetiredToken(token_id=token_id):
            message = f"deleted token {token_id}: its grace period is over"
            return (Announcement("Normal", Reason.RETIRED, message),)
        case a.DeleteToken(token_id=token_id, reason=reason):
            return (Announcement("Normal", reason, f"deleted token {token_id} in Dynatrace"),)
    return ()


def created_announcement(action: a.CreateToken, *, token_id: str) -> Announcement:
    return Announcement("Normal", action.reason, f"{action.reason.lower()} token {token_id}: {action.why}")


# --- terminal answers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settled:
    """What an object in sync shows, and when something comes due (a renewal, a grace period's end)."""

    outcome: Outcome
    extra: StatusPatch
    #: seconds until the earliest due work, None when nothing is due
    requeue_after: float | None


def in_sync(state: Input) -> Settled:
    recorded = state.recorded
    message = f"token {recorded.token_id} is in sync"
    if not recorded.secret_available:
        name = state.object_name
        message = (
            f"adopted token {recorded.token_id} is in sync, but its secret cannot be read back "
            f"from Dynatrace: rotate it to get one into Secret {state.desired.secret_name} "
            f"(kubectl annotate apitoken {name} {ROTATE_ANNOTATION}=1)"
        )
    renewal = next_renewal(state)
    # A renewal already due is waiting for a retiring token to go (--max-retiring): that token's own
    # time brings the object back, not the overdue renewal (which would wake it at once, for ever).
    pending_renewal = [renewal] if renewal and renewal > state.now else []
    due = [when for _, when in recorded.retiring] + pending_renewal
    requeue = max(0.0, (min(due) - state.now).total_seconds()) + 0.5 if due else None
    return Settled(
        outcome=Outcome(Health.READY, Reason.READY, message),
        extra={"nextRenewal": format_date(renewal) if renewal else None},
        requeue_after=requeue,
    )


def awaiting(action: a.AwaitPendingCreate, *, now: datetime, poll: float | None) -> Failure:
    """Another replica's create may be running: write nothing (it is writing this object); its writes,
    or `until`, bring the object back — or, with the peering object to ask (`poll`), a look every so
    often notices a replica that died long before `until`."""
    message = (
        f"another replica is creating this object's token (attempt {action.attempt}); waiting for it "
        f"to finish, until {format_date(action.until)} at the latest"
    )
    wait = max(0.0, (action.until - now).total_seconds()) + 1.0
    if poll is not None:
        wait = min(wait, poll)
    return Failure(Outcome(Health.RECONCILING, Reason.CREATING, message), retry_after=wait)


# --- failures ------------------------------------------------------------------------------------------


def dynatrace_failure(
    error: errors.DynatraceError, *, settings: ReconcileSettings, stalled_retry: float
) -> Failure:
    """What Dynatrace's refusal or silence means: stalled until a person acts, or a retry."""
    message = str(error)
    if isinstance(error, errors.InvalidRequest):
        return Failure(Outcome(Health.STALLED, Reason.REJECTED_BY_DYNATRACE, message), announce=True)
    if isinstance(error, errors.Unauthorized | errors.Forbidden):
        reason = Reason.UNAUTHORIZED if isinstance(error, errors.Unauthorized) else Reason.FORBIDDEN
        outcome = Outcome(Health.STALLED, reason, f"the connection's token was refused: {message}")
        return Failure(outcome, retry_after=stalled_retry, announce=True, connection_refused=True)
    if isinstance(error, errors.Throttled):
        wait = error.retry_after or settings.transient_retry
        outcome = Outcome(
            Health.RECONCILING, Reason.THROTTLED, f"Dynatrace is throttling; retrying in {wait:.0f} s"
        )
        return Failure(outcome, retry_after=wait)
    # A lost create answer is settled by listing, which costs little: look again soon.
    unknown = isinstance(error, errors.CreateOutcomeUnknown)
    wait = settings.outcome_unknown_retry if unknown else settings.transient_retry
    return Failure(
        Outcome(Health.RECONCILING, Reason.UNAVAILABLE, f"{message}; retrying in {wait:.0f} s"),
        retry_after=wait,
    )


def kubernetes_failure(message: str, *, conflict: bool, settings: ReconcileSettings) -> Failure:
    """A Kubernetes write or read failed: a conflict is looked at again at once, anything else soon."""
    if conflict:
        outcome = Outcome(
            Health.RECONCILING, Reason.PROGRESSING, "the object changed meanwhile; looking again"
        )
        return Failure(outcome, retry_after=settings.conflict_retry)
    outcome = Outcome(Health.RECONCILING, Reason.PROGRESSING, f"Kubernetes API error, retrying: {message}")
    return Failure(outcome, retry_after=settings.transient_retry)
