"""Work.recorded: the status read back through ApiTokenStatus, as leniently as the hand-written reader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apitoken_operator.controller.gather import Work
from apitoken_operator.reconcile.model import PendingCreate, Recorded

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OLD, NEW = "dt0c01." + "A" * 24, "dt0c01." + "B" * 24


def recorded(status: Any) -> Recorded:
    return Work(body={"metadata": {"name": "web", "namespace": "ns", "uid": "u"}, "status": status}).recorded(
        now=NOW
    )


def test_everything_the_operator_records_is_read_back() -> None:
    got = recorded(
        {
            "id": NEW,
            "secretName": "web",
            "requestedExpirationDate": "now+30d",
            "secretAvailable": False,
            "lastRotationRequest": "1",
            "retiringTokens": [{"id": OLD, "deleteAfter": "2030-06-01T13:00:00.000Z"}],
            "pendingCreate": {
                "attempt": "a" * 32,
                "name": "web [creating " + "a" * 32 + "]",
                "startedAt": "2030-06-01T11:59:00.000Z",
                "owner": "ci@example.com",
                "replaces": OLD,
                "graceSeconds": 3600,
                "writer": "replica-1",
            },
        }
    )
    assert got == Recorded(
        token_id=NEW,
        secret_name="web",
        expiration_requested="now+30d",
        secret_available=False,
        last_rotation_request="1",
        retiring=((OLD, NOW + timedelta(hours=1)),),
        pending=PendingCreate(
            attempt="a" * 32,
            name="web [creating " + "a" * 32 + "]",
            started_at=NOW - timedelta(minutes=1),
            owner="ci@example.com",
            replaces=OLD,
            grace_seconds=3600,
            writer="replica-1",
        ),
    )
    assert got.pending is not None and got.pending.marked


@pytest.mark.parametrize("status", [None, {}, {"pendingCreate": {}, "retiringTokens": []}, "garbage", [1]])
def test_an_empty_or_malformed_status_records_nothing(status: Any) -> None:
    assert recorded(status) == Recorded()


def test_a_retiring_token_whose_date_cannot_be_read_is_due_now_and_one_without_id_is_dropped() -> None:
    got = recorded(
        {
            "retiringTokens": [
                {"id": OLD, "deleteAfter": "tomorrow"},
                {"id": NEW},
                {"deleteAfter": "2030-06-01T13:00:00.000Z"},
                "junk",
                {"id": OLD, "deleteAfter": {"nested": True}},
            ]
        }
    )
    assert got.retiring == ((OLD, NOW), (NEW, NOW), (OLD, NOW))


def test_a_pending_create_whose_start_cannot_be_read_considers_every_candidate() -> None:
    got = recorded({"pendingCreate": {"attempt": "x", "startedAt": "yesterday", "graceSeconds": "lots"}})
    assert got.pending == PendingCreate(attempt="x", name="", started_at=EPOCH)


def test_empty_strings_read_as_unset_and_secret_available_defaults_to_true() -> None:
    got = recorded({"id": "", "secretName": "", "lastRotationRequest": "", "secretAvailable": None})
    assert got == Recorded()
