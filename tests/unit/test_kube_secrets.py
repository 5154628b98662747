"""kube.secrets: facts about a Secret (never its value) and the bodies the operator writes."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings

from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.kube import secrets
from apitoken_operator.reconcile.model import Desired, SecretFacts
from apitoken_operator.reconcile.secret_layout import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    OWNER_ANNOTATION,
    TOKEN_ID_ANNOTATION,
)
from tests.unit.builders import full_token, secret_part, secret_parts, tid, token_ids

UID = "6f1c1f9e-0000-4000-8000-000000000001"
ID = tid(7)
APITOKEN: dict[str, Any] = {
    "apiVersion": "dynatrace.apitokens.io/v1alpha1",
    "kind": "ApiToken",
    "metadata": {"name": "web", "namespace": "team-a", "uid": UID, "labels": {"argocd": "must-not-copy"}},
}
WANT = Desired(
    name="web ingest",
    scopes=frozenset({"metrics.ingest"}),
    secret_name="web",
    secret_key="apiToken",
    secret_labels={"team": "a"},
    secret_annotations={"note": "hello"},
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def owner_ref(uid: str = UID, *, controller: bool | None = True) -> dict[str, Any]:
    ref: dict[str, Any] = {"apiVersion": "dynatrace.apitokens.io/v1alpha1", "kind": "ApiToken", "name": "web"}
    ref["uid"] = uid
    if controller is not None:
        ref["controller"] = controller
    return ref


def secret_body(
    data: dict[str, str] | None = None, *, refs: list[dict[str, Any]] | None = None, **meta: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "web", "namespace": "team-a", "ownerReferences": refs, **meta},
        "data": data,
    }


# --- facts ----------------------------------------------------------------------------------------------


def test_facts_of_a_missing_secret() -> None:
    assert secrets.facts("web", None, key="token", owner_uid=UID) == SecretFacts(name="web")


@pytest.mark.parametrize(
    ("refs", "owned"),
    [
        ([owner_ref()], True),
        ([owner_ref("other-uid"), owner_ref()], True),
        ([owner_ref(controller=False)], False),
        ([owner_ref(controller=None)], False),
        ([owner_ref("other-uid")], False),
        ([], False),
        (None, False),
    ],
    ids=["controller", "among-others", "not-controller", "no-controller-field", "other-uid", "empty", "none"],
)
def test_owned_only_with_a_controller_reference_of_the_same_uid(
    refs: list[dict[str, Any]] | None, owned: bool
) -> None:
    facts = secrets.facts("web", secret_body({}, refs=refs), key="token", owner_uid=UID)
    assert facts.exists is True
    assert facts.owned is owned


def test_facts_of_the_operators_secret() -> None:
    body = secret_body(
        {"token": b64(full_token(ID)), "other": b64(full_token(tid(8))), "junk": b64("hello")},
        refs=[owner_ref()],
        labels={"team": "a"},
        annotations={TOKEN_ID_ANNOTATION: ID, "x": "y"},
    )
    facts = secrets.facts("web", body, key="token", owner_uid=UID)
    assert facts.value_token_id == ID
    assert facts.annotated_token_id == ID
    assert dict(facts.labels) == {"team": "a"}
    assert dict(facts.annotations) == {TOKEN_ID_ANNOTATION: ID, "x": "y"}
    assert facts.keys == frozenset({"token", "other", "junk"})
    assert dict(facts.token_ids) == {"token": ID, "other": tid(8)}


def test_value_token_id_reads_only_the_desired_key() -> None:
    body = secret_body({"other": b64(full_token(ID))}, refs=[owner_ref()])
    facts = secrets.facts("web", body, key="token", owner_uid=UID)
    assert facts.value_token_id is None
    assert dict(facts.token_ids) == {"other": ID}


def test_surrounding_whitespace_is_tolerated_when_reading() -> None:
    body = secret_body({"token": b64(f"  {full_token(ID)}\n")})
    assert secrets.facts("web", body, key="token", owner_uid=UID).value_token_id == ID


@pytest.mark.parametrize(
    "value",
    [
        "",
        "hello",
        ID,  # the id alone
        "dt0c01.short.",
        "dt0c01." + "a" * 24 + ".x",  # lower-case public part
        "not-base64!!",
    ],
    ids=["empty", "word", "id-only", "short-public", "lower-case", "not-base64"],
)
def test_no_value_token_id_for_what_is_not_a_token(value: str) -> None:
    encoded = value if value == "not-base64!!" else b64(value)
    facts = secrets.facts("web", secret_body({"token": encoded}), key="token", owner_uid=UID)
    assert facts.value_token_id is None
    assert dict(facts.token_ids) == {}


def test_no_value_token_id_for_bytes_that_are_not_text() -> None:
    encoded = base64.b64encode(b"\xff\xfe\x00").decode()
    assert (
        secrets.facts("web", secret_body({"token": encoded}), key="token", owner_uid=UID).value_token_id
        is None
    )


@pytest.mark.parametrize(
    "secret_of",
    [
        lambda: "",  # no secret part at all
        lambda: "x",  # a secret part of one character
        lambda: secret_part()[:63],  # one character short
        lambda: secret_part() + "A",  # one character long
        lambda: secret_part().lower(),  # lower case
        lambda: secret_part()[:32] + "-" + secret_part()[:31],  # a character outside [A-Z0-9]
    ],
    ids=["empty", "one-char", "63-chars", "65-chars", "lower-case", "dash"],
)
def test_value_token_id_only_for_a_well_formed_secret_part(secret_of: Callable[[], str]) -> None:
    """A Secret whose value is not a whole token (e.g. truncated by hand) does not hold the token.

    Otherwise the planner takes it for the token's Secret (InSync) while consumers get a broken value.
    """
    value = f"{ID}.{secret_of()}"
    facts = secrets.facts("web", secret_body({"token": b64(value)}), key="token", owner_uid=UID)
    ok = facts.value_token_id is None and dict(facts.token_ids) == {}
    assert ok, f"{value[: len(ID)]}.<malformed secret part> taken for token {facts.value_token_id}"


def test_value_token_id_never_carries_a_line_break() -> None:
    value = f"{ID}\n.{secret_part()}"  # the public part followed by a newline
    facts = secrets.facts("web", secret_body({"token": b64(value)}), key="token", owner_uid=UID)
    assert facts.value_token_id is None


@settings(max_examples=100)
@given(token_ids, secret_parts)
def test_facts_never_hold_the_secret(token_id: str, secret: str) -> None:
    body = secret_body(
        {"token": b64(f"{token_id}.{secret}"), "apiToken": b64(f"{token_id}.{secret}")},
        refs=[owner_ref()],
        annotations={TOKEN_ID_ANNOTATION: token_id},
    )
    facts = secrets.facts("web", body, key="token", owner_uid=UID)
    assert facts.value_token_id == token_id
    shown = f"{facts!r} {facts!s}"
    assert secret not in shown
    assert b64(f"{token_id}.{secret}") not in shown


# --- stored_secret ------------------------------------------------------------------------------------


def test_stored_secret() -> None:
    token = full_token(ID)
    stored = secrets.stored_secret(secret_body({"token": b64(token)}), key="token")
    assert stored == TokenSecret(token)
    assert stored is not None and stored.reveal() == token
    assert secrets.stored_secret(None, key="token") is None
    assert secrets.stored_secret(secret_body({"other": b64(token)}), key="token") is None
    assert secrets.stored_secret(secret_body(None), key="token") is None


# --- body -----------------------------------------------------------------------------------------------


def test_body_of_a_new_secret() -> None:
    token = full_token(ID)
    body = secrets.body(
        WANT, secret=TokenSecret(f" {token}\n"), token_id=ID, reference="team-a/web", apitoken=APITOKEN
    )
    assert (body["apiVersion"], body["kind"], body["type"]) == ("v1", "Secret", "Opaque")
    meta = body["metadata"]
    assert (meta["name"], meta["namespace"]) == ("web", "team-a")
    assert "resourceVersion" not in meta
    assert meta["labels"] == {"team": "a", MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    assert meta["annotations"] == {"note": "hello", TOKEN_ID_ANNOTATION: ID, OWNER_ANNOTATION: "team-a/web"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "dynatrace.apitokens.io/v1alpha1",
            "kind": "ApiToken",
            "name": "web",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert list(body["data"]) == ["apiToken"]
    assert base64.b64decode(body["data"]["apiToken"]).decode() == token  # no surrounding whitespace
    assert "argocd" not in meta["labels"]  # the ApiToken's own labels are never copied


def test_body_replacing_an_existing_secret_keeps_what_others_put_there() -> None:
    existing = secret_body(
        {"token": b64("old")},
        refs=[owner_ref()],
        resourceVersion="4711",
        labels={"keep": "me", "team": "b", MANAGED_BY_LABEL: "helm"},
        annotations={"kept": "too", TOKEN_ID_ANNOTATION: tid(1)},
    )
    body = secrets.body(
        WANT,
        secret=TokenSecret(full_token(ID)),
        token_id=ID,
        reference="team-a/web",
        apitoken=APITOKEN,
        existing=existing,
    )
    meta = body["metadata"]
    assert meta["resourceVersion"] == "4711"
    assert meta["labels"] == {"keep": "me", "team": "a", MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    assert meta["annotations"] == {
        "kept": "too",
        "note": "hello",
        TOKEN_ID_ANNOTATION: ID,
        OWNER_ANNOTATION: "team-a/web",
    }
    assert list(body["data"]) == ["apiToken"]  # the value lives only under the desired key
    assert existing["metadata"]["labels"]["team"] == "b"  # the input is not modified


@pytest.mark.parametrize(
    "refs",
    [None, [owner_ref("another-apitokens-uid")], [owner_ref(controller=False)], [owner_ref(controller=None)]],
    ids=["nobody's", "another ApiToken's", "owned but not controlled", "controller unset"],
)
def test_body_never_replaces_a_secret_this_apitoken_does_not_control(
    refs: list[dict[str, Any]] | None,
) -> None:
    """A create that lost a race for the name meets the winner's Secret: it must not take it over."""
    existing = secret_body({"token": b64("theirs")}, refs=refs, resourceVersion="4711")
    with pytest.raises(secrets.SecretNotOurs) as refused:
        secrets.body(
            WANT,
            secret=TokenSecret(full_token(ID)),
            token_id=ID,
            reference="team-a/web",
            apitoken=APITOKEN,
            existing=existing,
        )
    assert refused.value.conflict
    assert "'web'" in str(refused.value) and "not overwritten" in str(refused.value)


def test_a_written_body_reads_back_as_the_operators_secret() -> None:
    body = secrets.body(
        WANT, secret=TokenSecret(full_token(ID)), token_id=ID, reference="r", apitoken=APITOKEN
    )
    facts = secrets.facts("web", body, key=WANT.secret_key, owner_uid=UID)
    assert (facts.exists, facts.owned, facts.value_token_id, facts.annotated_token_id) == (True, True, ID, ID)


def test_metadata_patch_has_no_data() -> None:
    meta = secrets.metadata(WANT, token_id=ID, reference="team-a/web", apitoken=APITOKEN)
    assert set(meta) == {"labels", "annotations", "ownerReferences"}
