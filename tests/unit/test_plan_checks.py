"""Every check of `plan`, table-driven (scenario -> input -> expected action and key fields).

Shaped like cert-manager's checks tests: each scenario names the check that must decide, the action type
and the fields that matter. A scenario where a check passes names the check that decides instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, get_args

import pytest

from apitoken_operator.dynatrace.dates import format_date
from apitoken_operator.dynatrace.models import ApiTokenCreate, ApiTokenUpdate
from apitoken_operator.reconcile import actions as a
from apitoken_operator.reconcile.model import Desired, Input, Recorded, SecretFacts, SpecError
from apitoken_operator.reconcile.plan import CHECKS, DELETION_CHECKS, plan
from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.reconcile.secret_layout import (
    MANAGED_BY_LABEL,
    OWNER_ANNOTATION,
    TOKEN_ID_ANNOTATION,
)
from apitoken_operator.settings import PolicySettings
from tests.unit.builders import (
    ATTEMPT,
    NOW,
    OLD_SECRET,
    converged,
    desired,
    owned_secret,
    pending,
    tid,
    token_for,
)

OLD, NEW, OTHER = tid(1), tid(2), tid(3)
WANT = desired()
BASE = converged(WANT, token_id=OLD)


@dataclass(frozen=True)
class Scenario:
    name: str
    state: Input
    check: str
    action: type
    fields: dict[str, Any] = field(default_factory=dict)


def with_recorded(state: Input, **changes: Any) -> Input:
    return replace(state, recorded=replace(state.recorded, **changes))


def with_secret(state: Input, **changes: Any) -> Input:
    return replace(state, secret=replace(state.secret, **changes))


def with_token(state: Input, **changes: Any) -> Input:
    assert state.token is not None
    return replace(state, token=state.token.model_copy(update=changes))


def with_desired(state: Input, **changes: Any) -> Input:
    return replace(state, desired=replace(state.desired, **changes))


def expected_request() -> ApiTokenCreate:
    return ApiTokenCreate(name=WANT.name, scopes=sorted(WANT.scopes), expiration_date=None)


#: a DynaKube's Secret, shared: this ApiToken writes apiToken, converged
WANT_SHARED = replace(WANT, secret_shared=True, secret_key="apiToken")
SHARED = replace(
    converged(WANT_SHARED, token_id=OLD),
    secret=owned_secret(WANT_SHARED, OLD, shared=True, joinable=True, written_keys=frozenset({"apiToken"})),
)
#: the shared Secret, seen by an ApiToken that has written nothing yet
JOINING = replace(
    SHARED,
    recorded=Recorded(),
    token=None,
    secret=SecretFacts(
        name=WANT_SHARED.secret_name,
        exists=True,
        shared=True,
        joinable=True,
        keys=frozenset({"dataIngestToken"}),
    ),
)


#: how long another replica's create may run (peering): the retry deadline and clock skew
WINDOW = timedelta(minutes=3)
#: after a create whose answer may be lost: the old token is recorded, the new one may exist
PENDING = with_recorded(BASE, pending=pending(replaces=OLD))
NEW_IN_SECRET = replace(
    PENDING,
    secret=owned_secret(WANT, NEW),
    lost_create_candidates=(token_for(WANT, NEW), token_for(WANT, OTHER)),
)
NO_SECRET = SecretFacts(name=WANT.secret_name)
PAST, FUTURE = "2030-05-01T00:00:00.000Z", "2031-01-01T00:00:00.000Z"
IN_5_DAYS = format_date(NOW + timedelta(days=5))
#: an adopted token: recorded, but its secret was never known
ADOPTED = with_desired(BASE, adopt_token_id=OLD)


def renewing(*, expires_in: timedelta) -> Input:
    """A relative expiry with renewBefore 7d, the token expiring `expires_in` from now."""
    state = with_desired(
        BASE, expiration_date="now+30d", renew_before=timedelta(days=7), grace_period=timedelta(hours=2)
    )
    state = with_recorded(state, expiration_requested="now+30d")
    return with_token(state, expiration_date=format_date(NOW + expires_in))


FOREIGN = SecretFacts(name=WANT.secret_name, exists=True, owned=False, value_token_id=OLD)

SCENARIOS = [
    # --- settle_pending_create -----------------------------------------------------------------------
    Scenario(
        "pending create whose token is in the owned Secret is completed",
        NEW_IN_SECRET,
        "settle_pending_create",
        a.CompletePendingCreate,
        {"token_id": NEW, "replaces": OLD, "extra_token_ids": (OTHER,)},
    ),
    Scenario(
        "pending create whose Secret still holds the old token is abandoned",
        replace(PENDING, lost_create_candidates=(token_for(WANT, NEW),)),
        "settle_pending_create",
        a.AbandonPendingCreate,
        {"token_ids": (NEW,)},
    ),
    Scenario(
        "pending create with no candidates is abandoned with nothing to delete",
        PENDING,
        "settle_pending_create",
        a.AbandonPendingCreate,
        {"token_ids": ()},
    ),
    Scenario(
        "pending create never lists the recorded token among its leftovers",
        replace(PENDING, lost_create_candidates=(token_for(WANT, OLD), token_for(WANT, NEW))),
        "settle_pending_create",
        a.AbandonPendingCreate,
        {"token_ids": (NEW,)},
    ),
    Scenario(
        "pending create is not completed from a Secret someone else owns",
        with_secret(NEW_IN_SECRET, owned=False),
        "settle_pending_create",
        a.AbandonPendingCreate,
        {"token_ids": (NEW, OTHER)},
    ),
    Scenario(
        "pending create is completed with the token the Secret's value holds, whatever its annotation says",
        with_secret(NEW_IN_SECRET, value_token_id=OTHER),
        "settle_pending_create",
        a.CompletePendingCreate,
        {"token_id": OTHER, "extra_token_ids": (NEW,)},
    ),
    Scenario(
        "a same-named token somebody else made is never a leftover: only marked candidates are deleted",
        replace(PENDING, secret=owned_secret(WANT, OLD), lost_create_candidates=()),
        "settle_pending_create",
        a.AbandonPendingCreate,
        {"token_ids": ()},
    ),
    Scenario(
        "pending create whose token was already named as declared: completed from the proven Secret",
        replace(PENDING, secret=owned_secret(WANT, NEW), secret_proven=True),
        "settle_pending_create",
        a.CompletePendingCreate,
        {"token_id": NEW, "replaces": OLD, "extra_token_ids": ()},
    ),
    Scenario(
        "pending create whose Secret holds an unproven token that is no candidate: nothing taken from it",
        replace(PENDING, secret=owned_secret(WANT, NEW)),
        "settle_pending_create",
        a.AbandonPendingCreate,
        {"token_ids": ()},
    ),
    Scenario(
        "an intent of an earlier version (unmarked name): nothing deleted, people told",
        with_recorded(PENDING, pending=replace(pending(replaces=OLD), name=WANT.name)),
        "settle_pending_create",
        a.AbandonPendingCreate,
        {"token_ids": (), "unprovable_name": WANT.name},
    ),
    Scenario(
        "pending create while deleting, its renamed token proven in the Secret: deleted with the object",
        replace(PENDING, secret=owned_secret(WANT, NEW), secret_proven=True, deleting=True),
        "settle_pending_create",
        a.AbandonPendingCreate,
        {"token_ids": (NEW,)},
    ),
    Scenario(
        "... but left with the object under deletionPolicy Orphan",
        with_desired(
            replace(PENDING, secret=owned_secret(WANT, NEW), secret_proven=True, deleting=True),
            deletion_policy="Orphan",
        ),
        "settle_pending_create",
        a.AbandonPendingCreate,
        {"token_ids": ()},
    ),
    Scenario(
        "pending create is not completed from a Secret holding no candidate",
        replace(NEW_IN_SECRET, lost_create_candidates=(token_for(WANT, OTHER),)),
        "settle_pending_create",
        a.AbandonPendingCreate,
        {"token_ids": (OTHER,)},
    ),
    Scenario(
        "pending create is settled before a foreign Secret stalls the object",
        replace(PENDING, secret=FOREIGN, lost_create_candidates=(token_for(WANT, NEW),)),
        "settle_pending_create",
        a.AbandonPendingCreate,
        {"token_ids": (NEW,)},
    ),
    Scenario(
        "pending create while deleting is abandoned, even when the Secret holds its token",
        replace(NEW_IN_SECRET, deleting=True),
        "settle_pending_create",
        a.AbandonPendingCreate,
        {"token_ids": (NEW, OTHER)},
    ),
    Scenario(
        "pending create of a first token (nothing recorded) is completed from the Secret",
        replace(NEW_IN_SECRET, recorded=Recorded(pending=pending())),
        "settle_pending_create",
        a.CompletePendingCreate,
        {"token_id": NEW, "replaces": None, "extra_token_ids": (OTHER,)},
    ),
    Scenario(
        "another replica's create, recorded a minute ago, is waited for, not settled (peering)",
        replace(NEW_IN_SECRET, foreign_create_window=WINDOW),
        "settle_pending_create",
        a.AwaitPendingCreate,
        {"attempt": ATTEMPT, "until": NOW - timedelta(minutes=1) + WINDOW},
    ),
    Scenario(
        "another replica's create is waited for while deleting too: its token would be left behind",
        replace(PENDING, deleting=True, foreign_create_window=WINDOW),
        "settle_pending_create",
        a.AwaitPendingCreate,
        {"attempt": ATTEMPT},
    ),
    Scenario(
        "another replica's create older than the window is over: settled like a lost one",
        replace(
            PENDING,
            foreign_create_window=timedelta(seconds=30),
            lost_create_candidates=(token_for(WANT, NEW),),
        ),
        "settle_pending_create",
        a.AbandonPendingCreate,
        {"token_ids": (NEW,)},
    ),
    Scenario(
        "another replica's create whose replica is gone is settled at once, inside the window",
        with_recorded(
            replace(NEW_IN_SECRET, foreign_create_window=WINDOW),
            pending=replace(pending(replaces=OLD), writer="op@pod-a/1", writer_gone=True),
        ),
        "settle_pending_create",
        a.CompletePendingCreate,
        {"token_id": NEW, "replaces": OLD},
    ),
    Scenario(
        "this process's own create is over once its lock is free: settled at once (peering)",
        with_recorded(
            replace(NEW_IN_SECRET, foreign_create_window=WINDOW),
            pending=replace(pending(replaces=OLD), started_here=True),
        ),
        "settle_pending_create",
        a.CompletePendingCreate,
        {"token_id": NEW, "replaces": OLD},
    ),
    # --- secret_name_is_free -------------------------------------------------------------------------
    Scenario(
        "a Secret of that name not owned by the ApiToken stalls it",
        replace(BASE, secret=FOREIGN),
        "secret_name_is_free",
        a.Stall,
        {"reason": Reason.SECRET_NAME_TAKEN},
    ),
    Scenario(
        "a foreign Secret stalls a first create too",
        replace(BASE, secret=FOREIGN, recorded=Recorded(), token=None),
        "secret_name_is_free",
        a.Stall,
        {"reason": Reason.SECRET_NAME_TAKEN},
    ),
    Scenario(
        "a Secret owned by another ApiToken (not ours) stalls it",
        with_secret(BASE, owned=False),
        "secret_name_is_free",
        a.Stall,
        {"reason": Reason.SECRET_NAME_TAKEN},
    ),
    # --- token_is_known ------------------------------------------------------------------------------
    Scenario(
        "nothing recorded and no Secret: create the first token",
        replace(BASE, recorded=Recorded(), token=None, secret=NO_SECRET),
        "token_is_known",
        a.CreateToken,
        {"reason": Reason.CREATED, "replaces": None, "request": expected_request()},
    ),
    Scenario(
        "status lost but the owned Secret names and holds the token: recover its id",
        replace(BASE, recorded=Recorded(), token=None, secret_proven=True),
        "token_is_known",
        a.RecoverIdFromSecret,
        {"token_id": OLD},
    ),
    Scenario(
        "status lost and the Secret annotation disagrees with its value: the value wins",
        replace(
            BASE,
            recorded=Recorded(),
            token=None,
            secret=owned_secret(WANT, OLD, annotated_token_id=NEW),
            secret_proven=True,
        ),
        "token_is_known",
        a.RecoverIdFromSecret,
        {"token_id": OLD},
    ),
    Scenario(
        "status lost and the Secret has no annotation: the value still names the token",
        replace(
            BASE,
            recorded=Recorded(),
            token=None,
            secret=owned_secret(WANT, OLD, annotated_token_id=None),
            secret_proven=True,
        ),
        "token_is_known",
        a.RecoverIdFromSecret,
        {"token_id": OLD},
    ),
    Scenario(
        "status lost and the Secret names a token its value is not the secret of: no id taken from it",
        replace(BASE, recorded=Recorded(), token=None),
        "token_is_known",
        a.CreateToken,
        {"reason": Reason.CREATED},
    ),
    # --- token_exists --------------------------------------------------------------------------------
    Scenario(
        "the recorded token was deleted outside: recreate it",
        replace(BASE, token=None),
        "token_exists",
        a.CreateToken,
        {"reason": Reason.RECREATED, "replaces": None, "request": expected_request()},
    ),
    # --- secret_holds_the_token ----------------------------------------------------------------------
    Scenario(
        "the Secret was deleted: replace the token (its secret cannot be read back)",
        replace(BASE, secret=NO_SECRET),
        "secret_holds_the_token",
        a.CreateToken,
        {"reason": Reason.REPLACED, "replaces": OLD},
    ),
    Scenario(
        "the Secret holds another token: replace",
        with_secret(BASE, value_token_id=OTHER, token_ids={"token": OTHER}),
        "secret_holds_the_token",
        a.CreateToken,
        {"reason": Reason.REPLACED, "replaces": OLD},
    ),
    Scenario(
        "the Secret holds no well-formed token: replace",
        with_secret(BASE, value_token_id=None, token_ids={}),
        "secret_holds_the_token",
        a.CreateToken,
        {"reason": Reason.REPLACED, "replaces": OLD},
    ),
    Scenario(
        "spec.secret.key changed: move the value within the Secret",
        with_desired(
            with_secret(BASE, value_token_id=None, token_ids={"token": OLD}),
            secret_key="apiToken",
        ),
        "secret_holds_the_token",
        a.MoveSecret,
        {"source": "web", "source_key": "token", "target": "web"},
    ),
    Scenario(
        "spec.secret.name changed: move the value from the previous Secret",
        replace(
            with_recorded(BASE, secret_name=OLD_SECRET),
            secret=NO_SECRET,
            previous_secret=owned_secret(WANT, OLD, name=OLD_SECRET),
        ),
        "secret_holds_the_token",
        a.MoveSecret,
        {"source": OLD_SECRET, "source_key": "token", "target": "web"},
    ),
    Scenario(
        "spec.secret.name changed but the previous Secret is not ours: replace",
        replace(
            with_recorded(BASE, secret_name=OLD_SECRET),
            secret=NO_SECRET,
            previous_secret=owned_secret(WANT, OLD, name=OLD_SECRET, owned=False),
        ),
        "secret_holds_the_token",
        a.CreateToken,
        {"reason": Reason.REPLACED, "replaces": OLD},
    ),
    Scenario(
        "spec.secret.name changed and the previous Secret is gone: replace",
        replace(
            with_recorded(BASE, secret_name=OLD_SECRET),
            secret=NO_SECRET,
            previous_secret=SecretFacts(name=OLD_SECRET),
        ),
        "secret_holds_the_token",
        a.CreateToken,
        {"reason": Reason.REPLACED, "replaces": OLD},
    ),
    # --- immutable_fields_match ----------------------------------------------------------------------
    Scenario(
        "personalAccessToken changed: replace",
        with_desired(BASE, personal_access_token=True),
        "immutable_fields_match",
        a.CreateToken,
        {"reason": Reason.REPLACED, "replaces": OLD},
    ),
    Scenario(
        "expirationDate removed from the spec: replace",
        with_token(BASE, expiration_date="2031-01-01T00:00:00.000Z"),
        "immutable_fields_match",
        a.CreateToken,
        {"reason": Reason.REPLACED, "replaces": OLD},
    ),
    Scenario(
        "absolute expirationDate changed: replace",
        with_desired(
            with_token(BASE, expiration_date="2031-01-01T00:00:00.000Z"), expiration_date="2032-01-01T00:00"
        ),
        "immutable_fields_match",
        a.CreateToken,
        {"reason": Reason.REPLACED, "replaces": OLD},
    ),
    Scenario(
        "relative expirationDate changed: replace",
        with_recorded(
            with_desired(
                with_token(BASE, expiration_date="2030-07-01T12:00:00.000Z"), expiration_date="now+60d"
            ),
            expiration_requested="now+30d",
        ),
        "immutable_fields_match",
        a.CreateToken,
        {"reason": Reason.REPLACED, "replaces": OLD},
    ),
    # --- secret_metadata_matches ---------------------------------------------------------------------
    Scenario(
        "a spec.secret.labels entry is missing on the Secret",
        with_secret(BASE, labels={MANAGED_BY_LABEL: "dynatrace-apitoken-operator"}),
        "secret_metadata_matches",
        a.WriteSecretMetadata,
        {"why": "labels"},
    ),
    Scenario(
        "the managed-by label was changed",
        with_secret(BASE, labels={"team": "a", MANAGED_BY_LABEL: "helm"}),
        "secret_metadata_matches",
        a.WriteSecretMetadata,
        {"why": "labels"},
    ),
    Scenario(
        "the token-id annotation is stale",
        with_secret(BASE, annotations={**BASE.secret.annotations, TOKEN_ID_ANNOTATION: OTHER}),
        "secret_metadata_matches",
        a.WriteSecretMetadata,
        {"why": "annotations"},
    ),
    Scenario(
        "the apitoken annotation is missing",
        with_secret(
            BASE, annotations={k: v for k, v in BASE.secret.annotations.items() if k != OWNER_ANNOTATION}
        ),
        "secret_metadata_matches",
        a.WriteSecretMetadata,
        {"why": "annotations"},
    ),
    # --- previous_secret_is_gone ---------------------------------------------------------------------
    Scenario(
        "after a move the previous owned Secret is deleted",
        replace(
            with_recorded(BASE, secret_name=OLD_SECRET),
            previous_secret=owned_secret(WANT, OLD, name=OLD_SECRET),
        ),
        "previous_secret_is_gone",
        a.DeleteSecret,
        {"name": OLD_SECRET},
    ),
    Scenario(
        "a previous Secret that is not ours is left alone",
        replace(
            with_recorded(BASE, secret_name=OLD_SECRET),
            previous_secret=owned_secret(WANT, OLD, name=OLD_SECRET, owned=False),
        ),
        "in_sync",
        a.InSync,
    ),
    Scenario(
        "a previous Secret already gone needs nothing",
        replace(with_recorded(BASE, secret_name=OLD_SECRET), previous_secret=SecretFacts(name=OLD_SECRET)),
        "in_sync",
        a.InSync,
    ),
    # --- token_matches -------------------------------------------------------------------------------
    Scenario(
        "the token was renamed outside",
        with_token(BASE, name="renamed"),
        "token_matches",
        a.UpdateToken,
        {"token_id": OLD, "changed": ("name",)},
    ),
    Scenario(
        "a scope was added outside",
        with_token(BASE, scopes=[*sorted(WANT.scopes), "apiTokens.write"]),
        "token_matches",
        a.UpdateToken,
        {"token_id": OLD, "changed": ("scopes",)},
    ),
    Scenario(
        "the token was disabled outside",
        with_token(BASE, enabled=False),
        "token_matches",
        a.UpdateToken,
        {"token_id": OLD, "changed": ("enabled",)},
    ),
    Scenario(
        "a new token is enabled; spec says disabled",
        with_desired(BASE, enabled=False),
        "token_matches",
        a.UpdateToken,
        {"changed": ("enabled",)},
    ),
    Scenario(
        "name, scopes and enabled all drifted",
        with_token(BASE, name="x", scopes=["entities.read"], enabled=False),
        "token_matches",
        a.UpdateToken,
        {"changed": ("name", "scopes", "enabled")},
    ),
    Scenario(
        "scopes and enabled unknown (not listed) are not drift",
        with_token(BASE, scopes=None, enabled=None, personal_access_token=None),
        "in_sync",
        a.InSync,
    ),
    Scenario(
        "scope order does not matter",
        with_token(BASE, scopes=sorted(WANT.scopes, reverse=True)),
        "in_sync",
        a.InSync,
    ),
    # --- in_sync -------------------------------------------------------------------------------------
    Scenario("token, Secret and spec agree", BASE, "in_sync", a.InSync),
    Scenario(
        "relative expiry as recorded is in sync",
        with_recorded(
            with_desired(
                with_token(BASE, expiration_date="2030-07-01T12:00:00.000Z"), expiration_date="now+30d"
            ),
            expiration_requested="now+30d",
        ),
        "in_sync",
        a.InSync,
    ),
    Scenario(
        "the same absolute expiry in another zone is in sync",
        with_desired(
            with_token(BASE, expiration_date="2031-01-01T00:00:00.000Z"),
            expiration_date="2031-01-01T01:00:00+01:00",
        ),
        "in_sync",
        a.InSync,
    ),
    # --- token_is_known: adoption ---------------------------------------------------------------------
    Scenario(
        "spec.adoptTokenId names a token that exists: adopt it",
        replace(with_desired(BASE, adopt_token_id=OLD), recorded=Recorded(), secret=NO_SECRET),
        "token_is_known",
        a.AdoptToken,
        {"token_id": OLD},
    ),
    Scenario(
        "spec.adoptTokenId names a token that does not exist: stall",
        replace(with_desired(BASE, adopt_token_id=OLD), recorded=Recorded(), secret=NO_SECRET, token=None),
        "token_is_known",
        a.Stall,
        {"reason": Reason.ADOPTED_TOKEN_NOT_FOUND},
    ),
    Scenario(
        "spec.adoptTokenId naming the connection's own token is refused",
        replace(
            with_desired(BASE, adopt_token_id=OLD),
            recorded=Recorded(),
            secret=NO_SECRET,
            credential_token_ids=frozenset({OLD}),
        ),
        "token_is_known",
        a.Stall,
        {"reason": Reason.ADOPTION_REFUSED},
    ),
    Scenario(
        "spec.adoptTokenId naming a token another ApiToken records is refused",
        replace(
            with_desired(BASE, adopt_token_id=OLD), recorded=Recorded(), secret=NO_SECRET, adopt_claimed=True
        ),
        "token_is_known",
        a.Stall,
        {"reason": Reason.ADOPTION_REFUSED},
    ),
    Scenario(
        "adoption the operator's policy forbids (the default connection) is refused with the policy's words",
        replace(
            with_desired(BASE, adopt_token_id=OLD),
            recorded=Recorded(),
            secret=NO_SECRET,
            default_policy=PolicySettings(adoption_namespaces=("platform",)),
        ),
        "token_is_known",
        a.Stall,
        {"reason": Reason.ADOPTION_REFUSED},
    ),
    Scenario(
        "a recorded token that is the connection's credential is never touched (adopted before the check)",
        replace(with_token(BASE, name="renamed"), credential_token_ids=frozenset({OLD})),
        "credential_untouched",
        a.Stall,
        {"reason": Reason.ADOPTION_REFUSED},
    ),
    Scenario(
        "... and deleting such an object releases it, the credential left as it is",
        replace(BASE, credential_token_ids=frozenset({OLD}), deleting=True),
        "credential_untouched",
        a.ReleaseFinalizer,
        {"reason": Reason.ADOPTION_REFUSED},
    ),
    Scenario(
        "spec.adoptTokenId is ignored once a token is recorded",
        with_desired(BASE, adopt_token_id=NEW),
        "in_sync",
        a.InSync,
    ),
    Scenario(
        "an adopted token without its secret (no Secret yet) is in sync",
        replace(with_recorded(ADOPTED, secret_available=False), secret=NO_SECRET),
        "in_sync",
        a.InSync,
    ),
    Scenario(
        "adoption through the default connection by a namespace the policy names goes ahead",
        replace(
            with_desired(with_token(BASE, id=NEW), adopt_token_id=NEW),
            recorded=Recorded(),
            secret=NO_SECRET,
            default_policy=PolicySettings(adoption_namespaces=("team-*",)),
        ),
        "token_is_known",
        a.AdoptToken,
        {"token_id": NEW},
    ),
    Scenario(
        "a first token past the namespace's limit on the default connection is refused",
        replace(
            BASE,
            recorded=Recorded(),
            token=None,
            secret=NO_SECRET,
            default_policy=PolicySettings(max_tokens_per_namespace=2),
            namespace_holding=2,
        ),
        "token_is_known",
        a.Stall,
        {"reason": Reason.QUOTA_EXCEEDED},
    ),
    Scenario(
        "a first token under the namespace's limit is made",
        replace(
            BASE,
            recorded=Recorded(),
            token=None,
            secret=NO_SECRET,
            default_policy=PolicySettings(max_tokens_per_namespace=2),
            namespace_holding=1,
        ),
        "token_is_known",
        a.CreateToken,
        {"reason": Reason.CREATED},
    ),
    Scenario(
        "the limit never stops an object that has its token from being replaced",
        replace(
            BASE, token=None, default_policy=PolicySettings(max_tokens_per_namespace=0), namespace_holding=5
        ),
        "token_exists",
        a.CreateToken,
        {"reason": Reason.RECREATED},
    ),
    Scenario(
        "a rotation requested while as many tokens retire as allowed waits for the oldest to go",
        replace(
            with_recorded(
                BASE,
                last_rotation_request="1",
                retiring=((OTHER, NOW + timedelta(hours=1)), (NEW, NOW + timedelta(hours=2))),
            ),
            rotation_request="2",
            max_retiring=2,
        ),
        "in_sync",
        a.InSync,
    ),
    Scenario(
        "... and goes ahead once one fewer retires",
        replace(
            with_recorded(BASE, last_rotation_request="1", retiring=((OTHER, NOW + timedelta(hours=1)),)),
            rotation_request="2",
            max_retiring=2,
        ),
        "rotation_requested",
        a.CreateToken,
        {"reason": Reason.ROTATED},
    ),
    # --- rotation_requested --------------------------------------------------------------------------
    Scenario(
        "a new rotate annotation value rotates, keeping the old token for the grace period",
        replace(with_recorded(BASE, last_rotation_request="1"), rotation_request="2"),
        "rotation_requested",
        a.CreateToken,
        {"reason": Reason.ROTATED, "replaces": OLD, "grace": WANT.grace_period, "rotation_request": "2"},
    ),
    Scenario(
        "the first rotate annotation rotates",
        replace(BASE, rotation_request="2026-01-01"),
        "rotation_requested",
        a.CreateToken,
        {"reason": Reason.ROTATED, "replaces": OLD, "rotation_request": "2026-01-01"},
    ),
    Scenario(
        "a rotate annotation already acted on changes nothing",
        replace(with_recorded(BASE, last_rotation_request="1"), rotation_request="1"),
        "in_sync",
        a.InSync,
    ),
    Scenario(
        "rotating an adopted token fills its Secret",
        replace(with_recorded(ADOPTED, secret_available=False), secret=NO_SECRET, rotation_request="1"),
        "rotation_requested",
        a.CreateToken,
        {"reason": Reason.ROTATED, "replaces": OLD},
    ),
    # --- token_not_expired ---------------------------------------------------------------------------
    Scenario(
        "an expired token with a relative expirationDate is renewed at once",
        with_recorded(
            with_desired(with_token(BASE, expiration_date=PAST), expiration_date="now+30d"),
            expiration_requested="now+30d",
        ),
        "token_not_expired",
        a.CreateToken,
        {"reason": Reason.ROTATED, "replaces": OLD, "grace": None},
    ),
    Scenario(
        "an expired token at the absolute date the spec asks for stalls",
        with_desired(with_token(BASE, expiration_date=PAST), expiration_date=PAST),
        "token_not_expired",
        a.Stall,
        {"reason": Reason.EXPIRED},
    ),
    Scenario(
        "a token expiring later is not expired",
        with_desired(with_token(BASE, expiration_date=FUTURE), expiration_date=FUTURE),
        "in_sync",
        a.InSync,
    ),
    # --- renewal_due ---------------------------------------------------------------------------------
    Scenario(
        "renewBefore reached: renew, keeping the old token for the grace period",
        renewing(expires_in=timedelta(days=5)),
        "renewal_due",
        a.CreateToken,
        {"reason": Reason.ROTATED, "replaces": OLD, "grace": timedelta(hours=2)},
    ),
    Scenario(
        "renewBefore not reached yet",
        renewing(expires_in=timedelta(days=8)),
        "in_sync",
        a.InSync,
    ),
    Scenario(
        "an absolute expirationDate never renews",
        with_desired(renewing(expires_in=timedelta(days=5)), expiration_date=IN_5_DAYS),
        "in_sync",
        a.InSync,
    ),
    Scenario(
        "no renewBefore: renew only on request",
        with_desired(renewing(expires_in=timedelta(days=5)), renew_before=None),
        "in_sync",
        a.InSync,
    ),
    # --- retired_tokens_deleted ----------------------------------------------------------------------
    Scenario(
        "a retiring token whose grace period is over is deleted",
        with_recorded(BASE, retiring=((OTHER, NOW + timedelta(hours=1)), (NEW, NOW))),
        "retired_tokens_deleted",
        a.DeleteRetiredToken,
        {"token_id": NEW},
    ),
    Scenario(
        "a retiring token within its grace period is kept",
        with_recorded(BASE, retiring=((NEW, NOW + timedelta(seconds=1)),)),
        "in_sync",
        a.InSync,
    ),
    Scenario(
        "a retiring entry naming a connection's own token is dropped, the credential never deleted",
        replace(
            with_recorded(BASE, retiring=((NEW, NOW - timedelta(hours=1)),)),
            credential_token_ids=frozenset({NEW}),
        ),
        "retired_tokens_deleted",
        a.DropRetiring,
        {"token_id": NEW},
    ),
    # --- shared Secrets ------------------------------------------------------------------------------
    Scenario("a shared Secret this ApiToken writes its key into is in sync", SHARED, "in_sync", a.InSync),
    Scenario(
        "a labelled shared Secret whose key is free is joined: a token is made for the key",
        JOINING,
        "token_is_known",
        a.CreateToken,
        {"reason": Reason.CREATED},
    ),
    Scenario(
        "a Secret the operator did not make, without the shared label, is never joined",
        with_secret(JOINING, joinable=False),
        "secret_name_is_free",
        a.Stall,
        {"reason": Reason.SECRET_NAME_TAKEN},
    ),
    Scenario(
        "a key another ApiToken writes is refused",
        with_secret(JOINING, key_writer="team-a/other"),
        "secret_name_is_free",
        a.Stall,
        {"reason": Reason.SECRET_KEY_TAKEN},
    ),
    Scenario(
        "after spec.secret.key changed, the old key is removed once the token is under the new one",
        with_secret(SHARED, written_keys=frozenset({"apiToken", "paasToken"})),
        "shared_secret_holds_one_key",
        a.LeaveSharedSecret,
        {"name": WANT_SHARED.secret_name, "keep": "apiToken"},
    ),
    Scenario(
        "after spec.secret.name changed, the old shared Secret loses only this ApiToken's key",
        replace(
            with_recorded(SHARED, secret_name="old-dynakube"),
            previous_secret=SecretFacts(name="old-dynakube", exists=True, owned=True, shared=True),
        ),
        "previous_secret_is_gone",
        a.LeaveSharedSecret,
        {"name": "old-dynakube", "keep": None},
    ),
    Scenario(
        "deleting an ApiToken removes its key from the shared Secret, whatever the policy",
        with_desired(replace(SHARED, deleting=True), deletion_policy="Orphan"),
        "shared_keys_removed",
        a.LeaveSharedSecret,
        {"name": WANT_SHARED.secret_name},
    ),
    Scenario(
        "... and then its token goes as usual",
        replace(
            SHARED, deleting=True, secret=SecretFacts(name=WANT_SHARED.secret_name, exists=True, shared=True)
        ),
        "token_deleted",
        a.DeleteToken,
        {"token_id": OLD},
    ),
    # --- deletion: dynatrace_reachable --------------------------------------------------------------
    Scenario(
        "a connection that cannot be used blocks deleting the recorded token, and says how to release",
        replace(BASE, deleting=True, token=None, connection_problem="the connection Secret is gone"),
        "dynatrace_reachable",
        a.Stall,
        {"reason": Reason.DELETE_BLOCKED, "recheck": True},
    ),
    Scenario(
        "... unless deletionPolicy Orphan leaves the token anyway",
        with_desired(
            replace(BASE, deleting=True, token=None, connection_problem="refused"), deletion_policy="Orphan"
        ),
        "dynatrace_reachable",
        a.ReleaseFinalizer,
        {"reason": Reason.RELEASED},
    ),
    Scenario(
        "... or the object holds nothing in Dynatrace",
        replace(BASE, recorded=Recorded(), deleting=True, token=None, connection_problem="refused"),
        "dynatrace_reachable",
        a.ReleaseFinalizer,
        {"reason": Reason.RELEASED},
    ),
    Scenario(
        "a pending create blocks an Orphan deletion without a connection: what it made must be found",
        with_desired(
            replace(PENDING, deleting=True, token=None, connection_problem="refused"),
            deletion_policy="Orphan",
        ),
        "dynatrace_reachable",
        a.Stall,
        {"reason": Reason.DELETE_BLOCKED},
    ),
    Scenario(
        "the release annotation lets go whatever the connection",
        replace(BASE, deleting=True, release_requested=True, connection_problem="refused"),
        "release_requested",
        a.ReleaseFinalizer,
        {"reason": Reason.RELEASED},
    ),
    # --- deletion: retired_tokens_go_too -------------------------------------------------------------
    Scenario(
        "retiring tokens go with the object",
        with_recorded(replace(BASE, deleting=True), retiring=((NEW, NOW + timedelta(hours=1)),)),
        "retired_tokens_go_too",
        a.DeleteRetiredToken,
        {"token_id": NEW},
    ),
    Scenario(
        "retiring tokens go with the object even with deletionPolicy Orphan",
        with_desired(
            with_recorded(replace(BASE, deleting=True), retiring=((NEW, NOW + timedelta(hours=1)),)),
            deletion_policy="Orphan",
        ),
        "retired_tokens_go_too",
        a.DeleteRetiredToken,
        {"token_id": NEW},
    ),
    Scenario(
        "the release annotation leaves retiring tokens too",
        with_recorded(replace(BASE, deleting=True, release_requested=True), retiring=((NEW, NOW),)),
        "release_requested",
        a.ReleaseFinalizer,
        {"reason": Reason.RELEASED},
    ),
    # --- deletion: release_requested -----------------------------------------------------------------
    Scenario(
        "release annotation lets the object go at once",
        replace(BASE, deleting=True, release_requested=True),
        "release_requested",
        a.ReleaseFinalizer,
        {"reason": Reason.RELEASED},
    ),
    Scenario(
        "release annotation wins over a pending create",
        replace(NEW_IN_SECRET, deleting=True, release_requested=True),
        "release_requested",
        a.ReleaseFinalizer,
        {"reason": Reason.RELEASED},
    ),
    # --- deletion: orphan_policy ---------------------------------------------------------------------
    Scenario(
        "deletionPolicy Orphan leaves the token",
        with_desired(replace(BASE, deleting=True), deletion_policy="Orphan"),
        "orphan_policy",
        a.ReleaseFinalizer,
        {"reason": Reason.ORPHANED},
    ),
    Scenario(
        "deletionPolicy Orphan still settles a pending create first",
        with_desired(replace(NEW_IN_SECRET, deleting=True), deletion_policy="Orphan"),
        "settle_pending_create",
        a.AbandonPendingCreate,
        {"token_ids": (NEW, OTHER)},
    ),
    # --- deletion: token_deleted ---------------------------------------------------------------------
    Scenario(
        "deletionPolicy Delete deletes the recorded token",
        replace(BASE, deleting=True),
        "token_deleted",
        a.DeleteToken,
        {"token_id": OLD, "reason": Reason.DELETED},
    ),
    Scenario(
        "deleting ignores a foreign Secret (no stall)",
        replace(BASE, deleting=True, secret=FOREIGN),
        "token_deleted",
        a.DeleteToken,
        {"token_id": OLD},
    ),
    Scenario(
        "token already gone: release",
        replace(BASE, deleting=True, token=None),
        "token_deleted",
        a.ReleaseFinalizer,
        {"reason": Reason.DELETED},
    ),
    Scenario(
        "nothing was ever created: release",
        replace(BASE, deleting=True, token=None, recorded=Recorded()),
        "token_deleted",
        a.ReleaseFinalizer,
        {"reason": Reason.DELETED},
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_check(scenario: Scenario) -> None:
    result = plan(scenario.state)
    assert (result.check, type(result.action)) == (scenario.check, scenario.action)
    for name, value in scenario.fields.items():
        assert getattr(result.action, name) == value, name


def test_every_check_fires_in_some_scenario() -> None:
    fired = {s.check for s in SCENARIOS}
    assert {c.__name__ for c in (*CHECKS, *DELETION_CHECKS)} <= fired


def test_stall_message_names_the_secret_and_the_way_out() -> None:
    action = plan(replace(BASE, secret=FOREIGN)).action
    assert isinstance(action, a.Stall)
    assert "'web'" in action.message
    assert "spec.secret.name" in action.message


def test_replacement_explains_why() -> None:
    deleted = plan(replace(BASE, secret=NO_SECRET)).action
    emptied = plan(with_secret(BASE, value_token_id=None, token_ids={})).action
    assert isinstance(deleted, a.CreateToken) and isinstance(emptied, a.CreateToken)
    assert "was deleted" in deleted.why
    assert "no longer holds" in emptied.why
    pat = plan(with_desired(BASE, personal_access_token=True)).action
    assert isinstance(pat, a.CreateToken) and "personalAccessToken" in pat.why
    assert pat.request.personal_access_token is True


def test_create_request_mirrors_the_spec() -> None:
    want = desired(expiration_date="now+30d", personal_access_token=True, scopes=frozenset({"b", "a", "c"}))
    action = plan(Input(desired=want, recorded=Recorded(), secret=NO_SECRET, now=NOW)).action
    assert isinstance(action, a.CreateToken)
    assert action.request == ApiTokenCreate(
        name=want.name, scopes=["a", "b", "c"], expiration_date="now+30d", personal_access_token=True
    )
    assert action.request.wire() == {
        "name": want.name,
        "scopes": ["a", "b", "c"],
        "expirationDate": "now+30d",
        "personalAccessToken": True,
    }


def test_create_request_leaves_out_a_false_personal_access_token() -> None:
    action = plan(Input(desired=WANT, recorded=Recorded(), secret=NO_SECRET, now=NOW)).action
    assert isinstance(action, a.CreateToken)
    assert "personalAccessToken" not in action.request.wire()


def test_update_body_carries_the_whole_declaration() -> None:
    action = plan(with_token(BASE, scopes=["entities.read"])).action
    assert isinstance(action, a.UpdateToken)
    assert action.update == ApiTokenUpdate(name=WANT.name, enabled=WANT.enabled, scopes=sorted(WANT.scopes))


def test_terminal_actions() -> None:
    assert plan(BASE).terminal
    assert plan(replace(BASE, secret=FOREIGN)).terminal
    assert plan(replace(BASE, deleting=True, token=None)).terminal
    assert not plan(replace(BASE, token=None)).terminal
    assert not plan(replace(BASE, deleting=True)).terminal


# --- expiry and renewal edge cases ----------------------------------------------------------------------


def test_an_expired_token_is_replaced_when_the_spec_asks_a_later_date() -> None:
    """The Stall message says "set a later spec.expirationDate"; doing so must get a new token."""
    state = with_recorded(
        with_desired(with_token(BASE, expiration_date=PAST), expiration_date=FUTURE),
        expiration_requested=PAST,
    )
    result = plan(state)
    assert isinstance(result.action, a.CreateToken), result
    assert result.action.replaces == OLD
    assert result.action.request.expiration_date == FUTURE


def test_an_expired_token_is_replaced_when_the_spec_drops_the_expiry() -> None:
    """No spec.expirationDate asks for a token that never expires: the expired one is replaced."""
    state = with_recorded(with_token(BASE, expiration_date=PAST), expiration_requested=PAST)
    assert state.desired.expiration_date is None
    result = plan(state)
    assert isinstance(result.action, a.CreateToken), result
    assert result.action.replaces == OLD


def test_a_renew_before_longer_than_the_window_does_not_renew_a_fresh_token() -> None:
    """expirationDate now+1d with renewBefore 7d: a token made a moment ago is due at once.

    Every plan after a create would ask for another create (up to MAX_STEPS tokens per reconcile, each kept
    for the grace period); the plan must not renew a token it just made.
    """
    want = replace(WANT, expiration_date="now+1d", renew_before=timedelta(days=7))
    fresh = converged(want, token_id=NEW)
    fresh = with_token(fresh, expiration_date=format_date(NOW + timedelta(days=1)))
    result = plan(fresh)
    assert not isinstance(result.action, a.CreateToken), result.check


def test_the_longest_renew_before_the_crd_allows_does_not_crash_the_plan() -> None:
    """The CRD accepts renewBefore up to 999999w; expiry minus that is before year 1 (OverflowError)."""
    spec = {
        "name": WANT.name,
        "scopes": sorted(WANT.scopes),
        "enabled": True,
        "expirationDate": "now+30d",
        "rotation": {"renewBefore": "999999w"},
        "secret": {"name": "web", "labels": {"team": "a"}, "annotations": {"note": "hello"}},
    }
    with pytest.raises(SpecError, match=r"renewBefore \(999999w\) must be shorter"):
        Desired.from_spec(spec, object_name="web")
    want = replace(
        Desired.from_spec({**spec, "rotation": {}}, object_name="web"), renew_before=timedelta(weeks=999999)
    )  # built directly, past the spec's check
    try:
        result = plan(converged(want, token_id=OLD))
    except OverflowError as error:
        pytest.fail(f"plan raised OverflowError: {error}")
    assert isinstance(result.action, get_args(a.Action))


def test_policy_refusals_name_the_namespace_and_the_way_out() -> None:
    adopting = replace(
        with_desired(BASE, adopt_token_id=OLD),
        recorded=Recorded(),
        secret=NO_SECRET,
        default_policy=PolicySettings(adoption_namespaces=("platform",)),
    )
    action = plan(adopting).action
    assert isinstance(action, a.Stall)
    assert (
        "namespace 'team-a' may not adopt" in action.message and "--policy-adopt-namespace" in action.message
    )
    full = replace(
        BASE,
        recorded=Recorded(),
        token=None,
        secret=NO_SECRET,
        default_policy=PolicySettings(max_tokens_per_namespace=2),
        namespace_holding=3,
    )
    action = plan(full).action
    assert isinstance(action, a.Stall)
    assert "namespace 'team-a' already has 3 ApiTokens" in action.message and "(2)" in action.message


def test_a_blocked_deletion_names_the_object_and_the_annotation() -> None:
    state = replace(BASE, deleting=True, token=None, connection_problem="the connection Secret is gone")
    action = plan(state).action
    assert isinstance(action, a.Stall)
    assert f"cannot delete token {OLD}: the connection Secret is gone" in action.message
    assert "kubectl annotate apitoken web -n team-a dynatrace.apitokens.io/release=true" in action.message


def test_a_rounded_expiry_shorter_than_renew_before_at_this_hour_stalls_with_the_spec_rule() -> None:
    """now+1d/d at noon lives 12 h: renewBefore 13h passes the spec check (read at midnight, 24 h) but
    every token made now would be due at once, so the plan stops with the same rule's message."""
    spec = {"name": "web", "scopes": ["a"], "expirationDate": "now+1d/d", "rotation": {"renewBefore": "13h"}}
    want = Desired.from_spec(spec, object_name="web")
    result = plan(converged(want, token_id=OLD))
    assert isinstance(result.action, a.Stall) and result.action.reason == Reason.INVALID_SPEC, result
    assert result.action.message == (
        "spec.rotation.renewBefore (13h) must be shorter than the token's lifetime (now+1d/d), "
        "or every new token would be due for renewal at once"
    )
    assert not isinstance(plan(converged(replace(want, renew_before=timedelta(hours=11)))).action, a.Stall)
