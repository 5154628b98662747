"""kstatus conditions and observed token fields of the ApiToken status."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apitoken_operator.dynatrace.dates import format_date
from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.reconcile.status import (
    Health,
    Outcome,
    conditions,
    last_used_period,
    same_conditions,
    token_fields,
)

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


TOKEN_ID = "dt0c01." + "A" * 24


def boundary(interval: float) -> datetime:
    """The first start of one of TOKEN_ID's last-use periods after 2030-06-01 (they are staggered)."""
    start = datetime(2030, 6, 1, tzinfo=UTC)
    here = last_used_period(format_date(start), interval=interval, token_id=TOKEN_ID)
    seconds = 0
    while (
        last_used_period(
            format_date(start + timedelta(seconds=seconds)), interval=interval, token_id=TOKEN_ID
        )
        == here
    ):
        seconds += 1
    return start + timedelta(seconds=seconds)


def used(at: datetime) -> ApiToken:
    return ApiToken(
        id=TOKEN_ID, owner="ci@example.com", last_used_date=format_date(at), last_used_ip_address="10.0.0.2"
    )


def reported(at: datetime | None, token_id: str = TOKEN_ID) -> dict[str, object]:
    return {"id": token_id, "lastUsedDate": format_date(at) if at else None, "lastUsedIpAddress": "10.0.0.1"}


@pytest.mark.parametrize(
    ("before", "after", "written"),
    [
        (timedelta(minutes=-50), timedelta(minutes=-1), False),  # both in one period: not yet
        (timedelta(minutes=-1), timedelta(minutes=1), True),  # the token's period turned: due
        (timedelta(minutes=1), timedelta(minutes=59), False),  # next period, no turn
        (None, timedelta(minutes=-1), True),  # a first use is shown at once
    ],
)
def test_last_use_reaches_the_status_once_a_period(
    before: timedelta | None, after: timedelta, written: bool
) -> None:
    turn = boundary(3600.0)
    fields = token_fields(
        used(turn + after),
        reported=reported(turn + before if before is not None else None),
        last_used_interval=3600.0,
    )
    assert fields["owner"] == "ci@example.com"  # the other fields always
    assert ("lastUsedDate" in fields) is written
    assert ("lastUsedIpAddress" in fields) is written


def test_another_token_or_an_unreadable_date_is_always_written() -> None:
    turn = boundary(3600.0)
    other = token_fields(
        used(turn), reported=reported(turn, token_id="dt0c01." + "B" * 24), last_used_interval=3600.0
    )
    assert other["lastUsedDate"] == format_date(turn)
    garbage = {**reported(turn), "lastUsedDate": "garbage"}
    assert "lastUsedDate" in token_fields(used(turn), reported=garbage, last_used_interval=3600.0)
    assert "lastUsedDate" in token_fields(used(turn), reported=None, last_used_interval=3600.0)


def test_periods_are_staggered_across_tokens() -> None:
    """Tokens in constant use come due at different moments, not all at the top of the hour."""
    starts = {
        last_used_period("2030-06-01T00:00:00.000Z", interval=3600.0, token_id=f"dt0c01.{i:024d}")
        - last_used_period("2030-06-01T00:00:00.000Z", interval=3600.0, token_id=None)
        for i in range(50)
    }
    offsets = {zlib.crc32(f"dt0c01.{i:024d}".encode()) % 3600 for i in range(50)}
    assert len(offsets) > 40 and starts <= {0, 1}


def test_a_replacement_token_never_used_clears_the_last_use() -> None:
    fresh = ApiToken(id="dt0c01." + "B" * 24)
    assert (
        token_fields(fresh, reported=reported(boundary(3600.0)), last_used_interval=3600.0)["lastUsedDate"]
        is None
    )
