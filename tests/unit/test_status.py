"""kstatus conditions and observed token fields of the ApiToken status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.reconcile.status import Health, Outcome, conditions, same_conditions, token_fields

T0 = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
STAMP0, STAMP1 = "2030-06-01T12:00:00.000Z", "2030-06-01T12:05:00.000Z"
READY = Outcome(Health.READY, Reason.READY, "token x is in sync")
RECONCILING = Outcome(Health.RECONCILING, Reason.THROTTLED, "Dynatrace is throttling")
STALLED = Outcome(Health.STALLED, Reason.SECRET_NAME_TAKEN, "Secret 'web' already exists")


def by_type(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in items}


@pytest.mark.parametrize(
    ("outcome", "ready", "reconciling", "stalled"),
    [
        (READY, "True", "False", "False"),
        (RECONCILING, "False", "True", "False"),
        (STALLED, "False", "False", "True"),
    ],
    ids=["ready", "reconciling", "stalled"],
)
def test_condition_values_per_health(outcome: Outcome, ready: str, reconciling: str, stalled: str) -> None:
    result = by_type(conditions(outcome, generation=3, previous=[], now=T0))
    assert list(result) == ["Ready", "Reconciling", "Stalled"]
    assert [result[k]["status"] for k in result] == [ready, reconciling, stalled]
    for condition in result.values():
        assert condition["observedGeneration"] == 3
        assert condition["lastTransitionTime"] == STAMP0
        assert condition["reason"]
    # Ready always explains itself; the true condition carries the outcome; the others are quiet
    assert (result["Ready"]["reason"], result["Ready"]["message"]) == (outcome.reason.value, outcome.message)
    true = next(c for c in result.values() if c["status"] == "True")
    assert (true["reason"], true["message"]) == (outcome.reason.value, outcome.message)
    for kind in ("Reconciling", "Stalled"):
        if result[kind]["status"] == "False":
            assert (result[kind]["reason"], result[kind]["message"]) == (f"No{kind}", "")


def test_last_transition_time_is_kept_when_nothing_flips() -> None:
    first = conditions(READY, generation=1, previous=[], now=T0)
    again = conditions(
        Outcome(Health.READY, Reason.READY, "another message"), generation=2, previous=first, now=T1
    )
    assert {c["lastTransitionTime"] for c in again} == {STAMP0}
    assert {c["observedGeneration"] for c in again} == {2}
    assert by_type(again)["Ready"]["message"] == "another message"


def test_last_transition_time_moves_only_for_flipped_conditions() -> None:
    first = conditions(READY, generation=1, previous=[], now=T0)
    stalled = by_type(conditions(STALLED, generation=1, previous=first, now=T1))
    assert stalled["Ready"]["lastTransitionTime"] == STAMP1  # True -> False
    assert stalled["Stalled"]["lastTransitionTime"] == STAMP1  # False -> True
    assert stalled["Reconciling"]["lastTransitionTime"] == STAMP0  # False -> False


def test_a_new_condition_type_gets_the_current_time() -> None:
    previous = [{"type": "Ready", "status": "True", "lastTransitionTime": STAMP0}]
    result = by_type(conditions(READY, generation=None, previous=previous, now=T1))
    assert result["Ready"]["lastTransitionTime"] == STAMP0
    assert result["Stalled"]["lastTransitionTime"] == STAMP1
    assert result["Ready"]["observedGeneration"] is None


def test_same_conditions_ignores_only_last_transition_time() -> None:
    first = conditions(READY, generation=1, previous=[], now=T0)
    later = conditions(READY, generation=1, previous=[], now=T1)
    assert same_conditions(first, later)
    assert same_conditions(first, list(reversed(later)))  # order does not matter
    assert not same_conditions(first, conditions(READY, generation=2, previous=[], now=T0))
    assert not same_conditions(first, conditions(STALLED, generation=1, previous=[], now=T0))
    other_message = conditions(Outcome(Health.READY, Reason.READY, "x"), generation=1, previous=[], now=T0)
    assert not same_conditions(first, other_message)
    assert not same_conditions(first, [])


def test_token_fields() -> None:
    token = ApiToken(
        id="dt0c01." + "A" * 24,
        name="web",
        owner="ci@example.com",
        creation_date=STAMP0,
        modified_date=STAMP1,
        last_used_date=STAMP1,
        last_used_ip_address="10.0.0.1",
        expiration_date="2031-01-01T00:00:00.000Z",
    )
    assert token_fields(token) == {
        "id": token.id,
        "owner": "ci@example.com",
        "creationDate": STAMP0,
        "modifiedDate": STAMP1,
        "lastUsedDate": STAMP1,
        "lastUsedIpAddress": "10.0.0.1",
        "expirationDate": "2031-01-01T00:00:00.000Z",
    }


def test_token_fields_clear_what_is_unknown() -> None:
    cleared = token_fields(None)
    assert set(cleared) == {
        "id",
        "owner",
        "creationDate",
        "modifiedDate",
        "lastUsedDate",
        "lastUsedIpAddress",
        "expirationDate",
    }
    assert set(cleared.values()) == {None}
    assert token_fields(ApiToken(id="x"))["expirationDate"] is None


USED = ApiToken(
    id="dt0c01." + "A" * 24,
    owner="ci@example.com",
    last_used_date="2030-06-01T12:30:00.000Z",
    last_used_ip_address="10.0.0.2",
)
REPORTED = {"id": USED.id, "lastUsedDate": "2030-06-01T12:00:00.000Z", "lastUsedIpAddress": "10.0.0.1"}


@pytest.mark.parametrize(
    ("reported", "interval", "written"),
    [
        (REPORTED, 3600.0, False),  # used again 30 min later: not yet
        (REPORTED, 1800.0, True),  # exactly one interval later: due
        ({**REPORTED, "lastUsedDate": None}, 3600.0, True),  # a first use is shown at once
        ({**REPORTED, "id": "dt0c01." + "B" * 24}, 3600.0, True),  # another token: its own use
        ({**REPORTED, "lastUsedDate": "garbage"}, 3600.0, True),  # unreadable: replaced
        (None, 3600.0, True),  # nothing reported to compare with: everything
    ],
)
def test_last_use_reaches_the_status_at_a_bounded_rate(
    reported: dict[str, object] | None, interval: float, written: bool
) -> None:
    fields = token_fields(USED, reported=reported, last_used_interval=interval)
    assert fields["owner"] == "ci@example.com"  # the other fields always
    assert ("lastUsedDate" in fields) is written
    assert ("lastUsedIpAddress" in fields) is written
    if written:
        assert fields["lastUsedDate"] == USED.last_used_date


def test_a_replacement_token_never_used_clears_the_last_use() -> None:
    fresh = ApiToken(id="dt0c01." + "B" * 24)
    assert token_fields(fresh, reported=REPORTED, last_used_interval=3600.0)["lastUsedDate"] is None
