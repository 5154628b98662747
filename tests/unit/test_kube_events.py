"""Events as `kubectl describe apitoken` shows them: about the right object, masked, within limits."""

from __future__ import annotations

from datetime import UTC, datetime

from apitoken_operator.dynatrace.secrets import TOKEN_PATTERN
from apitoken_operator.kube.events import MESSAGE_LIMIT, event_body
from tests.unit.builders import full_token, tid

APITOKEN = {"metadata": {"name": "web", "namespace": "team", "uid": "u-1", "resourceVersion": "7"}}
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_an_event_names_its_apitoken_and_when() -> None:
    event = event_body(APITOKEN, type="Normal", reason="Created", message="created token", now=NOW)
    assert event["involvedObject"] == {
        "apiVersion": "dynatrace.apitokens.io/v1alpha1",
        "kind": "ApiToken",
        "name": "web",
        "namespace": "team",
        "uid": "u-1",
        "resourceVersion": "7",
    }
    assert event["metadata"] == {"generateName": "web.", "namespace": "team"}
    assert (event["type"], event["reason"], event["count"]) == ("Normal", "Created", 1)
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2030-01-02T03:04:05Z"


def test_a_token_in_a_message_is_masked_and_long_messages_are_cut() -> None:
    event = event_body(
        APITOKEN, type="Warning", reason="X", message=f"said {full_token(tid(1))} " + "x" * 5000, now=NOW
    )
    assert not TOKEN_PATTERN.search(event["message"])
    assert tid(1) in event["message"]
    assert len(event["message"]) == MESSAGE_LIMIT
