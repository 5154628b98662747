"""Safety properties of `plan`, over generated inputs (hypothesis)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, get_args

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from apitoken_operator.controller.calls import as_observed as _as_observed
from apitoken_operator.controller.gather import Work
from apitoken_operator.controller.status_writer import merge_patch
from apitoken_operator.dynatrace.dates import DateFormatError, format_date, parse_date
from apitoken_operator.dynatrace.models import ApiToken, ApiTokenCreated, ApiTokenUpdate
from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.reconcile import actions as a
from apitoken_operator.reconcile import creation, effects
from apitoken_operator.reconcile.model import Desired, Input, Recorded, SecretFacts
from apitoken_operator.reconcile.plan import CHECKS, DELETION_CHECKS, Plan, plan
from apitoken_operator.reconcile.policy import adoption_violation
from apitoken_operator.reconcile.reasons import Reason
from tests.unit.builders import (
    ATTEMPT,
    NOW,
    REFERENCE,
    converged,
    desireds,
    inputs,
    owned_secret,
    secret_parts,
    token_ids,
)

PROPERTIES = settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
ACTION_TYPES = get_args(a.Action)


def decide(state: Input) -> Plan:
    result = plan(state)
    assert isinstance(result.action, ACTION_TYPES)
    return result


def plan_is_one_action_from_a_known_check(state: Input, result: Plan) -> None:
    checks = DELETION_CHECKS if state.deleting else CHECKS
    assert result.check in {c.__name__ for c in checks}
    assert plan(state) == result  # deterministic


def pending_create_is_settled_before_anything_else(state: Input, result: Plan) -> None:
    if state.recorded.pending is None:
        return
    if state.deleting and state.release_requested:
        assert isinstance(result.action, a.ReleaseFinalizer)
    elif state.deleting and state.connection_problem is not None:  # cannot be settled without Dynatrace
        assert isinstance(result.action, a.Stall) and result.action.reason is Reason.DELETE_BLOCKED
    else:
        assert isinstance(
            result.action, a.CompletePendingCreate | a.AbandonPendingCreate | a.AwaitPendingCreate
        )


def no_create_while_the_secret_name_is_taken(state: Input, result: Plan) -> None:
    secret = state.secret
    if secret.shared:  # taken: a Secret that does not let it in, or its key another's
        refused = not secret.owned and not secret.joinable
        taken = secret.exists and (refused or secret.key_writer is not None)
        reasons = {Reason.SECRET_NAME_TAKEN, Reason.SECRET_KEY_TAKEN}
    else:
        taken = secret.exists and not secret.owned
        reasons = {Reason.SECRET_NAME_TAKEN}
    if taken:
        assert not isinstance(result.action, a.CreateToken)
    if taken and not state.deleting and state.recorded.pending is None:
        assert isinstance(result.action, a.Stall)
        assert result.action.reason in reasons


def _proven_held(state: Input) -> str | None:
    """The token the object's Secret holds, where that is proof of ownership (recorded, or looked up)."""
    held = state.secret.value_token_id if state.secret.exists and state.secret.owned else None
    return held if held is not None and (held == state.recorded.token_id or state.secret_proven) else None


def settling_never_touches_the_recorded_token(state: Input, result: Plan) -> None:
    action = result.action
    candidate_ids = {t.id for t in state.lost_create_candidates}
    proven = _proven_held(state)
    if isinstance(action, a.AbandonPendingCreate):
        assert state.recorded.token_id not in action.token_ids
        assert set(action.token_ids) <= candidate_ids | ({proven} if state.deleting and proven else set())
        assert len(set(action.token_ids)) == len(action.token_ids)
    if isinstance(action, a.CompletePendingCreate):
        assert not state.deleting
        assert action.token_id in candidate_ids or action.token_id == proven
        assert action.token_id != state.recorded.token_id
        assert state.secret.exists and state.secret.owned
        assert state.secret.value_token_id == action.token_id
        assert state.recorded.token_id not in action.extra_token_ids
        assert action.token_id not in action.extra_token_ids
        assert state.recorded.pending is not None
        assert action.replaces == state.recorded.pending.replaces


def another_replicas_create_is_never_settled_while_it_may_run(state: Input, result: Plan) -> None:
    """Peering: a create recorded by another process, younger than the window, is left alone (unless an
    administrator releases the object, which leaves its tokens anyway)."""
    pending, window = state.recorded.pending, state.foreign_create_window
    running = (
        not (state.deleting and state.release_requested)
        and pending is not None
        and window is not None
        and not pending.started_here
        and not pending.writer_gone
        and state.now < pending.started_at + window
    )
    assert isinstance(result.action, a.AwaitPendingCreate) == running


DELETION_ACTIONS = (
    a.ReleaseFinalizer
    | a.DeleteToken
    | a.DeleteRetiredToken
    | a.DropRetiring
    | a.AbandonPendingCreate
    | a.AwaitPendingCreate
    | a.Stall
    | a.LeaveSharedSecret
)


def deleting_never_creates_or_updates(state: Input, result: Plan) -> None:
    action = result.action
    if state.deleting:
        assert isinstance(action, DELETION_ACTIONS)
        if isinstance(action, a.Stall):  # only a connection that cannot be used holds a deletion up
            assert state.connection_problem is not None and action.reason is Reason.DELETE_BLOCKED
    else:  # live objects are never released
        assert not isinstance(action, a.ReleaseFinalizer | a.DeleteToken)
    if isinstance(action, a.DeleteToken):
        assert state.desired.deletion_policy == "Delete"
        # its own token, even if the status was lost: then only one the Secret provably holds
        assert action.token_id in (state.recorded.token_id, _proven_held(state))
        assert state.token is not None


def orphan_policy_never_deletes_the_recorded_token(state: Input, result: Plan) -> None:
    if state.desired.deletion_policy != "Orphan":
        return
    assert not isinstance(result.action, a.DeleteToken)
    if isinstance(result.action, a.AbandonPendingCreate):
        assert state.recorded.token_id not in result.action.token_ids
    if isinstance(result.action, a.DeleteRetiredToken):
        assert result.action.token_id != state.recorded.token_id


def only_retired_tokens_are_retired(state: Input, result: Plan) -> None:
    action = result.action
    if isinstance(action, a.DeleteRetiredToken):
        due = {i for i, when in state.recorded.retiring if state.deleting or when <= state.now}
        assert action.token_id in due
        assert action.token_id != state.recorded.token_id
        assert action.token_id != state.secret.value_token_id or not state.secret.owned
    if isinstance(action, a.DropRetiring):
        assert action.token_id in {i for i, _ in state.recorded.retiring}
        in_use = {state.recorded.token_id, state.secret.value_token_id, *state.credential_token_ids}
        assert action.token_id in in_use


def adoption_takes_only_the_named_token(state: Input, result: Plan) -> None:
    action = result.action
    if isinstance(action, a.AdoptToken):
        assert not state.deleting and state.recorded.token_id is None and state.recorded.pending is None
        assert action.token_id == state.desired.adopt_token_id
        assert state.token is not None and state.token.id == action.token_id
    if state.desired.adopt_token_id and state.recorded.token_id is None:
        assert not isinstance(action, a.CreateToken)
    if isinstance(action, a.RecoverIdFromSecret):  # only the token the owned Secret provably holds
        assert state.secret.owned and action.token_id == state.secret.value_token_id
        assert state.secret_proven
    if isinstance(action, a.AdoptToken):  # never a credential, another object's token, or against policy
        assert action.token_id not in state.credential_token_ids
        assert not state.adopt_claimed
        policy = state.default_policy
        assert policy is None or adoption_violation(state.namespace, policy=policy) is None


def the_namespace_limit_holds(state: Input, result: Plan) -> None:
    """Through the default connection, no first token for a namespace at its limit."""
    policy = state.default_policy
    if isinstance(result.action, a.CreateToken) and state.recorded.token_id is None and policy is not None:
        limit = policy.max_tokens_per_namespace
        assert limit is None or state.namespace_holding < limit


def without_a_connection_nothing_touches_dynatrace(state: Input, result: Plan) -> None:
    """A deletion whose connection cannot be used either lets go (nothing to lose) or waits, asking."""
    if state.deleting and state.connection_problem is not None:
        assert isinstance(result.action, a.ReleaseFinalizer | a.Stall)
        if isinstance(result.action, a.ReleaseFinalizer) and not state.release_requested:
            assert state.recorded.pending is None
            assert state.recorded.token_id is None or state.desired.deletion_policy == "Orphan"


def a_credential_is_never_touched(state: Input, result: Plan) -> None:
    """The tokens the connections authenticate with are never updated, replaced, retired or deleted."""
    action = result.action
    touched: set[str] = set()
    if isinstance(action, a.UpdateToken | a.FinishCreate | a.DeleteToken | a.DeleteRetiredToken):
        touched.add(action.token_id)
    if isinstance(action, a.AbandonPendingCreate):
        touched.update(action.token_ids)
    if isinstance(action, a.CreateToken) and action.replaces:
        touched.add(action.replaces)
    assert not touched & state.credential_token_ids


def stalls_have_a_user_facing_reason(state: Input, result: Plan) -> None:
    if isinstance(result.action, a.Stall):
        assert not state.deleting or state.connection_problem is not None
        assert result.action.reason in {
            Reason.SECRET_NAME_TAKEN,
            Reason.SECRET_KEY_TAKEN,
            Reason.ADOPTED_TOKEN_NOT_FOUND,
            Reason.ADOPTION_REFUSED,
            Reason.EXPIRED,
            Reason.QUOTA_EXCEEDED,
            Reason.DELETE_BLOCKED,
        }
        assert result.action.message


def only_the_recorded_token_is_ever_replaced(state: Input, result: Plan) -> None:
    action = result.action
    if isinstance(action, a.CreateToken):
        assert not state.deleting
        assert action.replaces is None or action.replaces == state.recorded.token_id
        if action.rotation_request is not None:  # a rotation asked by annotation, answered once
            assert action.rotation_request == state.rotation_request != state.recorded.last_rotation_request
            assert action.reason is Reason.ROTATED
        if action.grace is not None:  # only a rotation keeps the old token for a while
            assert action.reason is Reason.ROTATED and action.grace == state.desired.grace_period
        assert action.request.name == state.desired.name
        assert action.request.scopes == sorted(state.desired.scopes)
        assert action.request.expiration_date == state.desired.expiration_date
        assert action.request.personal_access_token is (True if state.desired.personal_access_token else None)


def secrets_are_moved_and_deleted_only_when_owned(state: Input, result: Plan) -> None:
    action = result.action
    if isinstance(action, a.MoveSecret):
        source = state.secret if action.source == state.secret.name else state.previous_secret
        assert source is not None and source.exists and source.owned
        assert source.token_ids.get(action.source_key) == state.recorded.token_id
        assert action.target == state.desired.secret_name
    if isinstance(action, a.DeleteSecret):
        assert state.previous_secret is not None
        assert action.name == state.previous_secret.name != state.desired.secret_name
        assert state.previous_secret.owned and not state.previous_secret.shared
    if isinstance(action, a.LeaveSharedSecret):  # only its own keys, only from a shared Secret it writes in
        source = state.secret if action.name == state.secret.name else state.previous_secret
        assert source is not None and source.shared and source.owned
        assert action.keep in (None, state.desired.secret_key)
    if state.desired.secret_shared and isinstance(action, a.CreateToken):  # never into another's key
        assert state.secret.key_writer is None
        assert not state.secret.exists or state.secret.owned or state.secret.joinable


def an_update_carries_the_full_declaration(state: Input, result: Plan) -> None:
    action = result.action
    if isinstance(action, a.UpdateToken):
        want = state.desired
        assert action.token_id == state.recorded.token_id
        assert action.update == ApiTokenUpdate(
            name=want.name, enabled=want.enabled, scopes=sorted(want.scopes)
        )
        assert action.update.wire() == {
            "name": want.name,
            "enabled": want.enabled,
            "scopes": sorted(want.scopes),
        }
        assert action.changed and set(action.changed) <= {"name", "scopes", "enabled"}


INVARIANTS: tuple[Callable[[Input, Plan], None], ...] = (
    plan_is_one_action_from_a_known_check,
    pending_create_is_settled_before_anything_else,
    no_create_while_the_secret_name_is_taken,
    settling_never_touches_the_recorded_token,
    another_replicas_create_is_never_settled_while_it_may_run,
    deleting_never_creates_or_updates,
    orphan_policy_never_deletes_the_recorded_token,
    only_the_recorded_token_is_ever_replaced,
    secrets_are_moved_and_deleted_only_when_owned,
    an_update_carries_the_full_declaration,
    a_credential_is_never_touched,
    only_retired_tokens_are_retired,
    adoption_takes_only_the_named_token,
    the_namespace_limit_holds,
    without_a_connection_nothing_touches_dynatrace,
    stalls_have_a_user_facing_reason,
)


@settings(PROPERTIES, max_examples=500)
@given(inputs)
def test_safety_invariants_hold_for_every_input(state: Input) -> None:
    """One generated input, every invariant (generation is the cost; checking is cheap)."""
    result = decide(state)
    event(f"{result.check} -> {type(result.action).__name__}")
    for invariant in INVARIANTS:
        try:
            invariant(state, result)
        except AssertionError as error:
            raise AssertionError(f"{invariant.__name__} broken by {type(result.action).__name__}") from error


def _after_now(text: str) -> bool:
    try:
        return parse_date(text, now=NOW) > NOW
    except DateFormatError:
        return True  # unparsable dates never count as expired


@PROPERTIES
@given(desireds(), token_ids)
def test_a_converged_input_is_in_sync(want: Desired, token_id: str) -> None:
    state = converged(want, token_id=token_id)
    expires = state.token.expiration_date if state.token else None
    assume(expires is None or _after_now(expires))  # an expired token is not converged
    assert isinstance(decide(state).action, a.InSync)
    if want.expiration_date is None:  # nothing expires: time alone changes nothing
        assert isinstance(decide(replace(state, now=NOW.replace(year=2035))).action, a.InSync)


def recorded_after(status: dict[str, Any], *patches: dict[str, Any]) -> tuple[dict[str, Any], Recorded]:
    """The status the patches leave, and what the next reconcile reads from it (as the operator does)."""
    for patch in patches:
        status = merge_patch(status, patch)
    body = {"metadata": {"namespace": "team-a", "name": "web", "uid": "u1"}, "status": status}
    return status, Work(body=body).recorded(now=NOW)


@PROPERTIES
@given(desireds(), token_ids, secret_parts, st.sampled_from([None, "ci@example.com"]))
def test_after_a_create_the_plan_converges_in_one_update(
    want: Desired, token_id: str, secret: str, owner: str | None
) -> None:
    """Carry out the planned create with the statuses its effects write, and re-plan: one update, then in
    sync; and a crash between intent and record leaves an intent the plan settles first."""
    first = Input(desired=want, recorded=Recorded(), secret=SecretFacts(name=want.secret_name), now=NOW)
    action = decide(first).action
    assert isinstance(action, a.CreateToken)
    expiry = "2030-07-01T12:00:00.000Z" if want.expiration_date else None
    if want.expiration_date and not want.expiration_date.startswith("now"):
        assume(_after_now(want.expiration_date))  # Dynatrace refuses a create dated in the past (400)
        expiry = want.expiration_date  # an absolute date comes back as asked (garbage is judged as asked)
    name = creation.marked_name(want.name, ATTEMPT)
    intent = effects.intent(action, attempt=ATTEMPT, name=name, owner=owner, now=NOW, writer=None)
    status, interrupted = recorded_after({}, intent)
    assert interrupted.pending is not None and interrupted.pending.marked
    crashed = replace(first, recorded=interrupted, secret=owned_secret(want, token_id), reference=REFERENCE)
    assert decide(crashed).check == "settle_pending_create", "an interrupted create is settled first"
    created = ApiTokenCreated(id=token_id, token=TokenSecret(f"{token_id}.{secret}"), expiration_date=expiry)
    request = action.request.model_copy(update={"name": name})
    observed = _as_observed(created, request, owner=owner)
    done = effects.created(action, token_id=token_id, status=status, desired=want, now=NOW)
    _, recorded = recorded_after(status, done)
    assert recorded.pending is None and recorded.token_id == token_id
    state = Input(
        desired=want,
        recorded=recorded,
        secret=owned_secret(want, token_id),
        now=NOW,
        token=observed,
        reference=REFERENCE,
    )
    step = decide(state).action
    # one update gives the token its declared name and enabled state, whatever they are
    assert isinstance(step, a.FinishCreate)
    assert (step.update.name, step.update.enabled) == (want.name, want.enabled)
    updated: ApiToken = observed.model_copy(
        update={"name": step.update.name, "enabled": step.update.enabled, "scopes": step.update.scopes}
    )
    assert isinstance(decide(replace(state, token=updated)).action, a.InSync)


@settings(PROPERTIES, max_examples=400)
@given(inputs)
def test_a_step_carried_out_is_not_planned_again(state: Input) -> None:
    """Every step makes progress: apply what an action changes in the status (its effects) and in
    Dynatrace (the tokens it deletes), re-plan, and the same action never comes back."""
    action = decide(state).action
    calls_only = (
        a.CreateToken,
        a.FinishCreate,
        a.UpdateToken,
        a.WriteSecretMetadata,
        a.MoveSecret,
        a.DeleteSecret,
        a.LeaveSharedSecret,
    )
    assume(not isinstance(action, (*a.TERMINAL, *calls_only)))
    status = status_of(state)
    patch = effects.status_patch(action, status=status, desired=state.desired, now=NOW)
    _, recorded = recorded_after(status, patch)
    gone = set(effects.tokens_deleted_by(action))
    token = None if state.token is not None and state.token.id in gone else state.token
    if isinstance(action, a.AdoptToken | a.CompletePendingCreate | a.RecoverIdFromSecret):
        token = state.token if state.token is not None and state.token.id == recorded.token_id else None
    after = replace(
        state,
        recorded=recorded,
        token=token,
        lost_create_candidates=() if recorded.pending is None else state.lost_create_candidates,
    )
    event(type(action).__name__)
    assert decide(after).action != action


def status_of(state: Input) -> dict[str, Any]:
    """The status that reads back as `state.recorded` (the part the actions above touch)."""
    recorded = state.recorded
    status: dict[str, Any] = {}
    if recorded.token_id:
        status["id"] = recorded.token_id
    if recorded.secret_name:
        status["secretName"] = recorded.secret_name
    if not recorded.secret_available:
        status["secretAvailable"] = False
    if recorded.retiring:
        status["retiringTokens"] = [
            {"id": i, "deleteAfter": format_date(when)} for i, when in recorded.retiring
        ]
    if recorded.pending is not None:
        pending = recorded.pending
        status["pendingCreate"] = {
            "attempt": pending.attempt,
            "name": pending.name,
            "startedAt": format_date(pending.started_at),
            "replaces": pending.replaces,
            "graceSeconds": pending.grace_seconds,
        }
    _, back = recorded_after(status)
    assert back.token_id == recorded.token_id and back.retiring == recorded.retiring
    return status
