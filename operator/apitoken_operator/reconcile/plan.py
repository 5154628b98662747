"""`plan(input)`: the next step towards the declared state, chosen by ordered checks.

Each check looks at the input and either returns the action that fixes the first thing found wrong, or
None to let the next check look. The order encodes the safety rules: settle a pending create before
anything else (exactly one token per object), never make a token whose secret could not be stored
(an unrelated Secret holds the name), replace before patching, patch before declaring the object in sync.

One module on purpose, though long: the order of the checks is the safety argument, and it reads top to
bottom here, the deletion path after the live one, with the helpers they share at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from apitoken_operator.api.v1alpha1 import SHARED_LABEL
from apitoken_operator.dynatrace.dates import DateFormatError, format_date, is_relative, parse_date
from apitoken_operator.dynatrace.models import ApiTokenCreate, ApiTokenUpdate
from apitoken_operator.reconcile import actions as a
from apitoken_operator.reconcile import creation
from apitoken_operator.reconcile.attention import RELEASE_ANNOTATION
from apitoken_operator.reconcile.expiry import expiry_mismatch
from apitoken_operator.reconcile.model import (
    Desired,
    Input,
    SecretFacts,
    renewal_problem,
    running_elsewhere_until,
)
from apitoken_operator.reconcile.policy import (
    adoption_violation,
    grace_violation,
    policy_violation,
    quota_violation,
)
from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.reconcile.secret_layout import secret_annotations, secret_labels
from apitoken_operator.settings import PolicySettings

Check = Callable[[Input], a.Action | None]


@dataclass(frozen=True)
class Plan:
    action: a.Action
    #: the check that chose it, for logs and tests
    check: str

    @property
    def terminal(self) -> bool:
        return isinstance(self.action, a.TERMINAL)


def admission(desired: Desired, *, namespace: str, policy: PolicySettings) -> str | None:
    """Why the default connection must not serve this object at all (asked before anything is read, so a
    refused namespace costs Dynatrace nothing), or None."""
    return policy_violation(desired, namespace=namespace, policy=policy) or grace_violation(
        desired, policy=policy
    )


def needs_token_count(state: Input) -> bool:
    """Whether the namespace's count of token holders matters: a first token under a limit (counting
    walks every recorded token, so only then)."""
    policy = state.default_policy
    return (
        policy is not None and policy.max_tokens_per_namespace is not None and state.recorded.token_id is None
    )


def plan(state: Input) -> Plan:
    for check in DELETION_CHECKS if state.deleting else CHECKS:
        action = check(state)
        if action is not None:
            return Plan(action=action, check=check.__name__)
    raise AssertionError("the last check always decides")  # pragma: no cover


# --- checks shared by both paths --------------------------------------------------------------------


def settle_pending_create(state: Input) -> a.Action | None:
    """A recorded create ended without its answer being recorded: keep what it made, or delete it.

    Only what is provably this create's is touched: a token with the marked name its intent recorded
    (see `reconcile.creation`), or the token the object's own Secret holds when a lookup proved the
    value to be that token's secret. Never a token of the same name that somebody else made.
    """
    pending = state.recorded.pending
    if pending is None:
        return None
    until = running_elsewhere_until(pending, window=state.foreign_create_window, now=state.now)
    if until is not None:
        return a.AwaitPendingCreate(attempt=pending.attempt, until=until)
    recorded_id = state.recorded.token_id
    spared = {recorded_id, *state.credential_token_ids}
    candidates = tuple(t.id for t in state.lost_create_candidates if t.id and t.id not in spared)
    held = _held_token_id(state.secret)
    if held is not None and held not in spared and (held in candidates or state.secret_proven):
        if not state.deleting:
            return a.CompletePendingCreate(
                token_id=held,
                replaces=pending.replaces,
                extra_token_ids=tuple(c for c in candidates if c != held),
                grace_seconds=pending.grace_seconds,
            )
        if held not in candidates and state.desired.deletion_policy == "Delete":
            candidates = (*candidates, held)  # the object goes: so does the token its create made
    return a.AbandonPendingCreate(
        token_ids=candidates, unprovable_name=None if pending.marked else pending.name
    )


# --- the path of a live object ------------------------------------------------------------------------


def secret_name_is_free(state: Input) -> a.Action | None:
    secret = state.secret
    if state.desired.secret_shared and secret.exists:
        if not secret.owned and not secret.joinable:
            return a.Stall(
                Reason.SECRET_NAME_TAKEN,
                f"Secret {secret.name!r} already exists and does not let ApiTokens write keys into it; "
                f"label it {SHARED_LABEL}=true to share it, or choose another spec.secret.name",
            )
        if secret.key_writer is not None:
            return a.Stall(
                Reason.SECRET_KEY_TAKEN,
                f"key {state.desired.secret_key!r} of Secret {secret.name!r} is written by "
                f"{secret.key_writer}; a key has one writer. Choose another spec.secret.key",
            )
        return None
    if state.secret.exists and not state.secret.owned:
        return a.Stall(
            Reason.SECRET_NAME_TAKEN,
            f"Secret {state.secret.name!r} already exists and is not managed by this ApiToken; the operator "
            "will not overwrite it. Choose another spec.secret.name, or delete that Secret.",
        )
    return None


def token_is_known(state: Input) -> a.Action | None:
    if state.recorded.token_id is not None:
        return None
    held = _proven_held_token_id(state)
    if held is not None:  # the status lost the id; the Secret (ours) still holds the token
        return a.RecoverIdFromSecret(token_id=held)
    adopt = state.desired.adopt_token_id
    if adopt is not None:
        refusal = _adoption_refusal(state, adopt)
        if refusal is not None:
            return a.Stall(Reason.ADOPTION_REFUSED, refusal)
        if state.token is None or state.token.id != adopt:
            return a.Stall(
                Reason.ADOPTED_TOKEN_NOT_FOUND,
                f"spec.adoptTokenId {adopt} does not exist in Dynatrace (or the connection cannot see it); "
                "fix the id, or remove spec.adoptTokenId to create a new token",
            )
        return a.AdoptToken(token_id=adopt)
    if state.default_policy is not None:
        over = quota_violation(state.namespace, holding=state.namespace_holding, policy=state.default_policy)
        if over is not None:
            return a.Stall(Reason.QUOTA_EXCEEDED, over)
    return _create(state, Reason.CREATED, why="no token exists for this ApiToken yet")


def _adoption_refusal(state: Input, adopt: str) -> str | None:
    """Why `adopt` is not this object's to take: adoption renames, rescopes, rotates and deletes.

    The policy first: a namespace that may not adopt learns nothing about the id it named.
    """
    if state.default_policy is not None:
        refused = adoption_violation(state.namespace, policy=state.default_policy)
        if refused is not None:
            return refused
    if adopt in state.credential_token_ids:
        return (
            f"spec.adoptTokenId {adopt} is the token the operator's connection authenticates with; "
            "it cannot be adopted"
        )
    if state.adopt_claimed:
        return (
            f"spec.adoptTokenId {adopt} is managed by another ApiToken; a token has one owner. Remove "
            "spec.adoptTokenId to create a token of this object's own"
        )
    return None


def credential_untouched(state: Input) -> a.Action | None:
    """The recorded token is a connection's own credential (adopted before adoption was checked): leave it
    alone, or every ApiToken using that connection would stop working."""
    if state.recorded.token_id is not None and state.recorded.token_id in state.credential_token_ids:
        message = (
            f"token {state.recorded.token_id} is the token the operator's connection authenticates with; "
            "the operator will not change or delete it. Remove spec.adoptTokenId and status, or delete "
            "this ApiToken"
        )
        if state.deleting:
            return a.ReleaseFinalizer(Reason.ADOPTION_REFUSED, message + " (released, the token left as is)")
        return a.Stall(Reason.ADOPTION_REFUSED, message)
    return None


def token_exists(state: Input) -> a.Action | None:
    if state.token is None:
        return _create(
            state, Reason.RECREATED, why=f"token {state.recorded.token_id} was deleted outside the operator"
        )
    return None


def rotation_requested(state: Input) -> a.Action | None:
    request = state.rotation_request
    if not request or request == state.recorded.last_rotation_request or _retiring_full(state):
        return None
    return _create(
        state,
        Reason.ROTATED,
        replaces=state.recorded.token_id,
        grace=state.desired.grace_period,
        rotation_request=request,
        why=f"rotation requested ({request})",
    )


def token_not_expired(state: Input) -> a.Action | None:
    token = state.token
    assert token is not None
    expires = _expiry(token.expiration_date, state)
    if expires is None or expires > state.now:
        return None
    mismatch = expiry_mismatch(
        desired=state.desired.expiration_date,
        requested=state.recorded.expiration_requested,
        observed=token.expiration_date,
        now=state.now,
    )
    if mismatch:
        return None  # the spec already asks for another expiry: immutable_fields_match replaces the token
    if state.desired.expiration_date and is_relative(state.desired.expiration_date):
        return _create(
            state,
            Reason.ROTATED,
            replaces=token.id,
            why=f"the token expired at {token.expiration_date}; a new one gets a fresh window",
        )
    return a.Stall(
        Reason.EXPIRED,
        f"the token expired at {token.expiration_date}; set a later spec.expirationDate "
        "(or a relative one such as now+90d) to get a new token",
    )


def secret_holds_the_token(state: Input) -> a.Action | None:
    token_id = state.recorded.token_id
    if _holds(state.secret, token_id) or not state.recorded.secret_available:
        return None
    for candidate in (state.secret, state.previous_secret):
        if candidate is None or not candidate.exists or not candidate.owned:
            continue
        key = next((k for k, i in sorted(candidate.token_ids.items()) if i == token_id), None)
        if key is not None:
            return a.MoveSecret(source=candidate.name, source_key=key, target=state.secret.name)
    what = "was deleted" if not state.secret.exists else "no longer holds the token's secret"
    return _create(
        state,
        Reason.REPLACED,
        replaces=token_id,
        why=f"Secret {state.secret.name!r} {what}; a secret cannot be read back from Dynatrace, "
        "so the token is replaced",
    )


def immutable_fields_match(state: Input) -> a.Action | None:
    token, desired = state.token, state.desired
    assert token is not None
    if (
        bool(token.personal_access_token) != desired.personal_access_token
        and token.personal_access_token is not None
    ):
        return _create(
            state,
            Reason.REPLACED,
            replaces=token.id,
            why="spec.personalAccessToken changed; Dynatrace cannot change it in place",
        )
    mismatch = expiry_mismatch(
        desired=desired.expiration_date,
        requested=state.recorded.expiration_requested,
        observed=token.expiration_date,
        now=state.now,
    )
    if mismatch:
        return _create(
            state, Reason.REPLACED, replaces=token.id, why=f"{mismatch}; expiry cannot change in place"
        )
    return None


def renewal_due(state: Input) -> a.Action | None:
    desired = state.desired
    if desired.renew_before is not None:  # checked on the spec too; a rounded expiry shortens with the day
        problem = renewal_problem(desired.renew_before, desired.expiration_date, now=state.now)
        if problem:
            return a.Stall(Reason.INVALID_SPEC, problem)
    renew_at = next_renewal(state)
    if renew_at is None or renew_at > state.now or _retiring_full(state):
        return None
    return _create(
        state,
        Reason.ROTATED,
        replaces=state.recorded.token_id,
        grace=state.desired.grace_period,
        why=f"renewal due {format_date(renew_at)} (spec.rotation.renewBefore before expiry)",
    )


def secret_metadata_matches(state: Input) -> a.Action | None:
    secret, desired = state.secret, state.desired
    if not secret.exists and not state.recorded.secret_available:
        return None  # an adopted token without a secret has no Secret to keep in shape
    token_id = state.recorded.token_id or ""
    labels = secret_labels(desired)
    annotations = secret_annotations(desired, token_id=token_id, owner=state.reference, uid=state.uid)
    if any(secret.labels.get(k) != v for k, v in labels.items()):
        return a.WriteSecretMetadata(why="labels")
    if any(secret.annotations.get(k) != v for k, v in annotations.items()):
        return a.WriteSecretMetadata(why="annotations")
    return None


def previous_secret_is_gone(state: Input) -> a.Action | None:
    previous = state.previous_secret
    if previous is not None and previous.exists and previous.owned:
        if previous.shared:
            return a.LeaveSharedSecret(name=previous.name)
        return a.DeleteSecret(name=previous.name)
    return None


def shared_secret_holds_one_key(state: Input) -> a.Action | None:
    """In a shared Secret this ApiToken writes only its declared key (an old one, after spec.secret.key
    changed, is removed once the token is under the new one)."""
    secret = state.secret
    if secret.shared and secret.written_keys - {state.desired.secret_key}:
        return a.LeaveSharedSecret(name=secret.name, keep=state.desired.secret_key)
    return None


def retired_tokens_deleted(state: Input) -> a.Action | None:
    for token_id, delete_after in state.recorded.retiring:
        if token_id in _in_use(state):
            return a.DropRetiring(token_id=token_id)
        if delete_after <= state.now:
            return a.DeleteRetiredToken(token_id=token_id)
    return None


def token_matches(state: Input) -> a.Action | None:
    token, desired = state.token, state.desired
    assert token is not None and token.id is not None
    if creation.is_marked(token.name) and token.name != desired.name:
        # A new token, its secret stored: the declared name (and enabled state) in one update.
        update = ApiTokenUpdate(name=desired.name, enabled=desired.enabled, scopes=sorted(desired.scopes))
        return a.FinishCreate(token_id=token.id, update=update)
    changed = []
    if token.name != desired.name:
        changed.append("name")
    if token.scopes is not None and frozenset(token.scopes) != desired.scopes:
        changed.append("scopes")
    if token.enabled is not None and token.enabled != desired.enabled:
        changed.append("enabled")
    if not changed:
        return None
    update = ApiTokenUpdate(name=desired.name, enabled=desired.enabled, scopes=sorted(desired.scopes))
    return a.UpdateToken(token_id=token.id, update=update, changed=tuple(changed))


def in_sync(state: Input) -> a.Action:
    return a.InSync()


CHECKS: tuple[Check, ...] = (
    settle_pending_create,
    secret_name_is_free,
    credential_untouched,
    token_is_known,
    token_exists,
    rotation_requested,
    token_not_expired,
    secret_holds_the_token,
    immutable_fields_match,
    renewal_due,
    secret_metadata_matches,
    previous_secret_is_gone,
    shared_secret_holds_one_key,
    retired_tokens_deleted,
    token_matches,
    in_sync,
)


# --- the path of an object being deleted -----------------------------------------------------------------


def release_requested(state: Input) -> a.Action | None:
    if state.release_requested:
        return a.ReleaseFinalizer(
            Reason.RELEASED,
            f"released by annotation; token {state.recorded.token_id or '(none)'} was left in Dynatrace",
        )
    return None


def dynatrace_reachable(state: Input) -> a.Action | None:
    """The connection cannot be used: let go what holds nothing in Dynatrace, otherwise wait for a fix
    or a release (a token the object may hold is never left behind silently)."""
    problem = state.connection_problem
    if problem is None:
        return None
    recorded = state.recorded
    # another replica may still be making the token (with a connection of its own): wait for it, as
    # settle_pending_create would, rather than call its create interrupted
    until = running_elsewhere_until(recorded.pending, window=state.foreign_create_window, now=state.now)
    if until is not None and recorded.pending is not None:
        return a.AwaitPendingCreate(attempt=recorded.pending.attempt, until=until)
    holds_nothing = recorded.token_id is None and recorded.pending is None
    if holds_nothing or (state.desired.deletion_policy == "Orphan" and recorded.pending is None):
        return a.ReleaseFinalizer(
            Reason.RELEASED,
            f"released without contacting Dynatrace; token {recorded.token_id or '(none)'} left in place",
        )
    what = f"token {recorded.token_id}" if recorded.token_id else "what its interrupted create made"
    return a.Stall(
        Reason.DELETE_BLOCKED,
        f"cannot delete {what}: {problem}. Fix the connection, or release the object "
        f"(leaving the token) with: kubectl annotate apitoken {state.object_name} -n {state.namespace} "
        f"{RELEASE_ANNOTATION}=true",
        recheck=True,
    )


def shared_keys_removed(state: Input) -> a.Action | None:
    """A shared Secret loses this ApiToken's key with it, whatever the policy (an owned Secret goes with
    its owner); the other writers' keys stay."""
    for secret in (state.secret, state.previous_secret):
        if secret is not None and secret.shared and secret.exists and secret.owned:
            return a.LeaveSharedSecret(name=secret.name)
    return None


def orphan_policy(state: Input) -> a.Action | None:
    if state.desired.deletion_policy == "Orphan":
        return a.ReleaseFinalizer(
            Reason.ORPHANED,
            f"deletionPolicy Orphan: token {state.recorded.token_id or '(none)'} left in Dynatrace",
        )
    return None


def token_deleted(state: Input) -> a.Action:
    token_id = state.token.id if state.token is not None else None
    if token_id is not None and token_id in (state.recorded.token_id, _proven_held_token_id(state)):
        return a.DeleteToken(token_id=token_id, reason=Reason.DELETED)
    return a.ReleaseFinalizer(Reason.DELETED, f"token {state.recorded.token_id or '(none)'} is deleted")


def retired_tokens_go_too(state: Input) -> a.Action | None:
    """Rotated-out tokens are deleted with the object, whatever the policy: they were on their way out."""
    for token_id, _ in state.recorded.retiring:
        if token_id in _in_use(state):
            return a.DropRetiring(token_id=token_id)
        return a.DeleteRetiredToken(token_id=token_id)
    return None


def _in_use(state: Input) -> set[str]:
    """The recorded token, the one the Secret holds and the connections' own: never retired, whatever
    the status says (a retiring entry naming a credential is dropped, the credential left alone)."""
    held = {i for i in (state.recorded.token_id, _held_token_id(state.secret)) if i}
    return held | state.credential_token_ids


DELETION_CHECKS: tuple[Check, ...] = (
    release_requested,
    dynatrace_reachable,
    settle_pending_create,
    credential_untouched,
    retired_tokens_go_too,
    shared_keys_removed,
    orphan_policy,
    token_deleted,
)


# --- helpers --------------------------------------------------------------------------------------------


def _held_token_id(secret: SecretFacts) -> str | None:
    """The id of the token in a Secret this ApiToken owns (its annotation need not be intact)."""
    return secret.value_token_id if secret.exists and secret.owned else None


def _retiring_full(state: Input) -> bool:
    """As many rotated-out tokens retire as an object may keep: the next rotation waits for the oldest
    (its deletion is due at a known time, which brings the object back)."""
    return state.max_retiring is not None and len(state.recorded.retiring) >= state.max_retiring


def _proven_held_token_id(state: Input) -> str | None:
    """The id of the token the Secret holds, where it may be taken as this object's: the one recorded,
    or one a lookup proved the Secret holds the live secret of (a Secret's value alone proves nothing:
    whoever may write the Secret could put any token id into it)."""
    held = _held_token_id(state.secret)
    if held is not None and (held == state.recorded.token_id or state.secret_proven):
        return held
    return None


def _holds(secret: SecretFacts, token_id: str | None) -> bool:
    return secret.exists and token_id is not None and secret.value_token_id == token_id


def next_renewal(state: Input) -> datetime | None:
    """Expiry minus renewBefore, for a relative expirationDate (an absolute one renews into the same date)."""
    desired, token = state.desired, state.token
    if desired.renew_before is None or token is None or not desired.expiration_date:
        return None
    if not is_relative(desired.expiration_date):
        return None
    expires = _expiry(token.expiration_date, state)
    try:
        return None if expires is None else expires - desired.renew_before
    except OverflowError:
        return None


def _expiry(text: str | None, state: Input) -> datetime | None:
    if not text:
        return None
    try:
        return parse_date(text, now=state.now)
    except DateFormatError:
        return None


def _create(
    state: Input,
    reason: Reason,
    *,
    why: str,
    replaces: str | None = None,
    grace: timedelta | None = None,
    rotation_request: str | None = None,
) -> a.CreateToken:
    desired = state.desired
    request = ApiTokenCreate(
        name=desired.name,
        scopes=sorted(desired.scopes),
        expiration_date=desired.expiration_date,
        personal_access_token=desired.personal_access_token or None,
    )
    return a.CreateToken(
        request=request,
        reason=reason,
        grace=grace,
        rotation_request=rotation_request,
        replaces=replaces,
        why=why,
    )
