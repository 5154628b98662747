"""The v1alpha1 models: camelCase on the wire, a lenient status reader, and the status merge patch."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from apitoken_operator.api.v1alpha1 import (
    ApiTokenSpec,
    ApiTokenStatus,
    Condition,
    PendingCreate,
    RetiringToken,
    status_patch,
)


def test_the_spec_reads_camel_case_and_applies_the_crd_defaults() -> None:
    spec = ApiTokenSpec.model_validate(
        {"name": "web", "scopes": ["metrics.read"], "personalAccessToken": True, "rotation": {}, "secret": {}}
    )
    assert spec.personal_access_token is True and spec.enabled is False
    assert spec.deletion_policy == "Delete"
    assert spec.rotation is not None and spec.rotation.grace_period == "1h"
    assert spec.secret is not None and spec.secret.key == "token"


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"name": "web", "scopes": ["metrics read"]}, ("scopes", 0)),
        ({"name": "web", "scopes": ["a", "a"]}, ("scopes",)),
        ({"name": "web", "scopes": ["a"], "adoptTokenId": "dt0c01.short"}, ("adoptTokenId",)),
        ({"name": "web", "scopes": ["a"], "secret": {"labels": {"t": "a/b"}}}, ("secret", "labels", "t")),
        ({"name": "web", "scopes": ["a"], "expirationDate": "now-1d"}, ("expirationDate",)),
    ],
)
def test_the_spec_holds_the_crd_patterns(spec: dict[str, Any], where: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as error:
        ApiTokenSpec.model_validate(spec)
    assert error.value.errors()[0]["loc"] == where


def test_a_stored_status_reads_back() -> None:
    status = ApiTokenStatus.read(
        {
            "observedGeneration": 3,
            "id": "dt0c01.ABC",
            "secretAvailable": False,
            "retiringTokens": [{"id": "dt0c01.OLD", "deleteAfter": "2026-01-01T00:00:00.000Z"}],
            "pendingCreate": {"attempt": "a1", "graceSeconds": 60, "writer": "w"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Created"}],
        }
    )
    assert (status.observed_generation, status.id, status.secret_available) == (3, "dt0c01.ABC", False)
    assert status.retiring_tokens == [RetiringToken(id="dt0c01.OLD", delete_after="2026-01-01T00:00:00.000Z")]
    assert status.pending_create == PendingCreate(attempt="a1", grace_seconds=60, writer="w")
    assert status.conditions == [Condition(type="Ready", status="True", reason="Created")]


def test_what_does_not_parse_reads_as_unset_and_spares_the_rest() -> None:
    status = ApiTokenStatus.read(
        {
            "id": "dt0c01.ABC",
            "observedGeneration": "three",
            "retiringTokens": ["junk", {"id": "dt0c01.OLD", "deleteAfter": {"when": "soon"}}, {"id": 7}],
            "pendingCreate": {"attempt": "a1", "graceSeconds": "many"},
            "conditions": [{"type": "Ready"}, {"type": "Stalled", "status": "False"}],
        }
    )
    assert status.id == "dt0c01.ABC" and status.observed_generation == 0
    assert status.retiring_tokens == [RetiringToken(id="dt0c01.OLD"), RetiringToken(id="7")]
    assert status.pending_create == PendingCreate(attempt="a1")
    assert status.conditions == [Condition(type="Stalled", status="False")]


@pytest.mark.parametrize("raw", [None, "status", [], {"retiringTokens": "x", "pendingCreate": 5}])
def test_a_status_of_the_wrong_shape_reads_as_empty(raw: Any) -> None:
    status = ApiTokenStatus.read(raw)
    assert (status.retiring_tokens, status.pending_create) == (None, None)


def test_status_patch_writes_what_was_set_and_removes_what_was_set_to_none() -> None:
    patch = status_patch(
        ApiTokenStatus(
            id="dt0c01.NEW",
            pending_create=None,
            retiring_tokens=[RetiringToken(id="dt0c01.OLD", delete_after="2026-01-01T00:00:00.000Z")],
            last_used_ip_address=None,
        )
    )
    assert patch == {
        "id": "dt0c01.NEW",
        "pendingCreate": None,
        "retiringTokens": [{"id": "dt0c01.OLD", "deleteAfter": "2026-01-01T00:00:00.000Z"}],
        "lastUsedIpAddress": None,
    }
    nested = status_patch(ApiTokenStatus(pending_create=PendingCreate(attempt="a", started_at="t")))
    assert nested == {"pendingCreate": {"attempt": "a", "startedAt": "t"}}
    assert status_patch(ApiTokenStatus()) == {}


def test_status_patch_round_trips_through_the_reader() -> None:
    written = ApiTokenStatus(id="x", secret_available=False, observed_generation=2)
    assert ApiTokenStatus.read(status_patch(written)) == written
