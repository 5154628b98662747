"""Pure helpers of the controller: which tokens a lost create may have made, and what a create left."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from apitoken_operator.controller.calls import as_observed
from apitoken_operator.controller.echoes import EchoFilter
from apitoken_operator.controller.gather import made_by
from apitoken_operator.controller.runtime import _compact
from apitoken_operator.controller.status_writer import combine_patches, merge_patch
from apitoken_operator.dynatrace.dates import format_date
from apitoken_operator.dynatrace.models import ApiToken, ApiTokenCreate, ApiTokenCreated
from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.reconcile import actions as a
from apitoken_operator.reconcile import creation
from apitoken_operator.reconcile.model import PendingCreate
from apitoken_operator.reconcile.reasons import Reason
from tests.unit.builders import NOW, full_token, tid

STARTED = NOW - timedelta(minutes=10)
ATTEMPT = "0123456789abcdef0123456789abcdef"
MARKED = creation.marked_name("web ingest", ATTEMPT)
PENDING = PendingCreate(attempt=ATTEMPT, name=MARKED, started_at=STARTED, owner="ci@example.com")
#: recorded by an earlier version, which sent the declared name
LEGACY = PendingCreate(attempt="a1", name="web ingest", started_at=STARTED, owner="ci@example.com")
MINE, OTHERS = tid(1), tid(2)


def candidate(**changes: object) -> ApiToken:
    fields: dict[str, object] = {
        "id": tid(9),
        "name": MARKED,
        "owner": "ci@example.com",
        "creation_date": format_date(STARTED + timedelta(seconds=1)),
    }
    fields.update(changes)
    return ApiToken.model_validate(fields)


CASES: list[tuple[str, ApiToken, PendingCreate, bool]] = [
    ("the marked name the intent recorded", candidate(), PENDING, True),
    ("no id", candidate(id=None), PENDING, False),
    ("the token the object keeps", candidate(id=MINE), PENDING, False),
    ("a token another ApiToken records", candidate(id=OTHERS), PENDING, False),
    (
        "the declared name, same owner, made just after the attempt: somebody else's (another cluster)",
        candidate(name="web ingest"),
        PENDING,
        False,
    ),
    (
        "another attempt's marked name",
        candidate(name=creation.marked_name("web ingest", "f" * 32)),
        PENDING,
        False,
    ),
    ("an unmarked intent proves nothing: even its exact name", candidate(name="web ingest"), LEGACY, False),
    ("whatever the dates say", candidate(creation_date=None), PENDING, True),
]


@pytest.mark.parametrize(("token", "pending", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_made_by(token: ApiToken, pending: PendingCreate, expected: bool) -> None:
    assert made_by(token, pending, excluded={OTHERS}, keep=MINE) is expected


def test_nothing_kept_and_nothing_excluded() -> None:
    assert made_by(candidate(id=MINE), PENDING, excluded=(), keep=None)


def test_marked_names() -> None:
    assert creation.attempt_of(MARKED) == ATTEMPT
    assert PENDING.marked and not LEGACY.marked
    assert not creation.is_marked("web ingest [creating 123]")
    long = creation.marked_name("x" * 255, ATTEMPT)
    assert len(long) <= 255 and creation.attempt_of(long) == ATTEMPT
    with pytest.raises(ValueError, match="hex"):
        creation.marked_name("web", "not-an-attempt")


def create_action(*, pat: bool | None, expiry: str | None = "now+30d") -> a.CreateToken:
    request = ApiTokenCreate(
        name="web ingest",
        scopes=["logs.ingest", "metrics.ingest"],
        expiration_date=expiry,
        personal_access_token=pat,
    )
    return a.CreateToken(request=request, reason=Reason.CREATED)


@pytest.mark.parametrize("pat", [None, True])
def test_as_observed_is_what_dynatrace_now_holds(pat: bool | None) -> None:
    action = create_action(pat=pat)
    created = ApiTokenCreated(
        id=MINE, token=TokenSecret(full_token(MINE)), expiration_date="2030-07-01T12:00:00.000Z"
    )
    observed = as_observed(created, action.request, owner="ci@example.com")
    assert observed.id == MINE
    assert observed.name == "web ingest"
    assert observed.enabled is True  # a new token is always enabled
    assert observed.personal_access_token is bool(pat)
    assert observed.owner == "ci@example.com"
    assert observed.expiration_date == "2030-07-01T12:00:00.000Z"  # resolved, not the relative request
    assert observed.scopes == ["logs.ingest", "metrics.ingest"]
    assert observed.scopes is not action.request.scopes
    assert observed.creation_date is None  # fetched later, so the status shows it
    assert "token" not in observed.model_dump()


def test_as_observed_without_expiry() -> None:
    created = ApiTokenCreated(id=MINE, token=TokenSecret(full_token(MINE)))
    observed = as_observed(created, create_action(pat=None, expiry=None).request, owner=None)
    assert observed.expiration_date is None
    assert observed.owner is None


def test_deferred_status_patches_combine_like_two_writes() -> None:
    status = {"id": "old", "pendingCreate": {"attempt": "a"}, "conditions": [1]}
    first = {"pendingCreate": None}
    second = {"pendingCreate": {"attempt": "b"}, "id": None}
    third = {"id": "new", "pendingCreate": None}
    combined = combine_patches(combine_patches(first, second), third)
    one_by_one = merge_patch(merge_patch(merge_patch(status, first), second), third)
    assert merge_patch(status, combined) == one_by_one == {"id": "new", "conditions": [1]}
    assert combined["pendingCreate"] is None  # the removal survives to the API server


def _body(version: str, *, generation: int = 1, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "uid": "u1",
            "resourceVersion": version,
            "generation": generation,
            "finalizers": ["dynatrace.apitokens.io/finalizer"],
            "annotations": annotations or {},
        }
    }


def test_the_events_of_its_own_writes_do_not_wake_the_reconciler() -> None:
    echoes = EchoFilter()
    echoes.begin("u1", _body("8"), adding_finalizer=True)
    echoes.wrote("u1", "9")  # the finalizer
    echoes.wrote("u1", "10", "11")  # a status write and a patch that went out together
    echoes.wrote("u1", "12")  # the create cleared
    echoes.wrote("u1", "13")  # the final status
    echoes.end("u1", _body("13"))
    assert all(echoes.own_echo(_body(v)) for v in ("9", "10", "11", "12", "13"))
    assert not echoes.own_echo(_body("14"))  # somebody else's write
    assert echoes.stale(_body("12")) and not echoes.stale(_body("13"))


def test_a_change_that_came_with_its_own_last_write_is_not_mistaken_for_an_echo() -> None:
    echoes = EchoFilter()
    echoes.begin("u1", _body("11"), adding_finalizer=False)
    echoes.wrote("u1", "12")
    assert not echoes.own_echo(_body("12", generation=2))  # the spec changed meanwhile
    rotate = {"dynatrace.apitokens.io/rotate": "1"}
    assert not echoes.own_echo(_body("12", annotations=rotate))
    assert echoes.own_echo(_body("12", annotations={"team": "a"}))  # not an input


def test_a_new_reconcile_forgets_the_versions_of_older_ones() -> None:
    echoes = EchoFilter()
    echoes.wrote("u1", "5")
    echoes.wrote("u1", "6")
    echoes.begin("u1", _body("6"), adding_finalizer=False)
    echoes.wrote("u1", "7")
    assert not echoes.own_echo(_body("5")), "an older reconcile's write is no echo of this one's"
    assert echoes.own_echo(_body("6")) and echoes.own_echo(_body("7"))
    echoes.forget("u1")
    assert not echoes.own_echo(_body("7")) and not echoes.stale(_body("1"))


def test_a_kept_body_drops_only_what_the_operator_never_reads() -> None:
    """A parked or queued object is reconciled later from the body it came with, kept compact: without
    managedFields and kubectl's copy of the spec, with everything else exactly as the event had it."""
    body = {
        "apiVersion": "dynatrace.apitokens.io/v1alpha1",
        "kind": "ApiToken",
        "metadata": {
            "name": "web",
            "namespace": "team-a",
            "uid": "u-1",
            "resourceVersion": "42",
            "generation": 3,
            "finalizers": ["dynatrace.apitokens.io/token"],
            "deletionTimestamp": "2026-12-02T00:00:00Z",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": '{"spec": {"name": "web"}}',
                "dynatrace.apitokens.io/rotate": "now",
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"name": "web", "scopes": ["metrics.ingest"]},
        "status": {"id": tid(1), "conditions": [{"type": "Ready", "status": "True"}]},
    }
    kept = json.loads(_compact(body))
    metadata = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    metadata["annotations"] = {"dynatrace.apitokens.io/rotate": "now"}
    assert kept == {**body, "metadata": metadata}
    assert "annotations" not in json.loads(_compact({"metadata": {"name": "web"}}))["metadata"]
