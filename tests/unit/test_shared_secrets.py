"""Shared Secrets (spec.secret.mode Shared): several ApiTokens each write their own key into one Secret,
e.g. a DynaKube's apiToken and dataIngestToken. What a writer sees, writes and removes."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest

from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.kube import secrets
from apitoken_operator.reconcile.model import Desired
from apitoken_operator.reconcile.secret_layout import writer_annotation, writer_value
from tests.unit.builders import full_token, tid

MINE, THEIRS = "uid-operator-token", "uid-data-ingest"
OPERATOR_TOKEN, INGEST_TOKEN = tid(1), tid(2)
WANT = Desired(
    name="dynakube operator",
    scopes=frozenset({"entities.read"}),
    secret_name="dynakube",
    secret_key="apiToken",
    secret_shared=True,
)


def apitoken(name: str = "operator-token", uid: str = MINE) -> dict[str, Any]:
    return {
        "apiVersion": "dynatrace.apitokens.io/v1alpha1",
        "kind": "ApiToken",
        "metadata": {"name": name, "namespace": "dynatrace", "uid": uid},
    }


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def shared_secret(
    *, made_by_operator: bool = True, joinable: bool = True, **keys: tuple[str, str]
) -> dict[str, Any]:
    """A shared Secret holding `key=(writer uid, token id)` entries, as the operator writes them."""
    annotations = {
        writer_annotation(key): writer_value(owner=f"dynatrace/{uid}", uid=uid, token_id=token_id)
        for key, (uid, token_id) in keys.items()
    }
    refs = [
        {"apiVersion": "dynatrace.apitokens.io/v1alpha1", "kind": "ApiToken", "name": uid, "uid": uid}
        for uid, _ in keys.values()
    ]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "dynakube",
            "namespace": "dynatrace",
            "resourceVersion": "41",
            "labels": {"dynatrace.apitokens.io/shared": "true"} if joinable else {},
            "annotations": annotations,
            "ownerReferences": refs if made_by_operator else [],
        },
        "data": {key: b64(full_token(token_id)) for key, (_, token_id) in keys.items()},
    }


def test_a_writer_sees_only_its_own_key_as_its_own() -> None:
    body = shared_secret(apiToken=(MINE, OPERATOR_TOKEN), dataIngestToken=(THEIRS, INGEST_TOKEN))
    facts = secrets.facts("dynakube", body, key="apiToken", owner_uid=MINE, shared=True)
    assert facts.owned and facts.joinable and facts.key_writer is None
    assert facts.value_token_id == OPERATOR_TOKEN == facts.annotated_token_id
    assert facts.token_ids == {"apiToken": OPERATOR_TOKEN}, "another writer's token is never its own"
    assert facts.written_keys == {"apiToken"}
    theirs = secrets.facts("dynakube", body, key="dataIngestToken", owner_uid=MINE, shared=True)
    assert theirs.key_writer == f"dynatrace/{THEIRS}" and theirs.value_token_id is None


def test_a_key_holding_data_nobody_recorded_is_not_free() -> None:
    body = shared_secret()
    body["data"] = {"apiToken": b64("typed in by hand")}
    facts = secrets.facts("dynakube", body, key="apiToken", owner_uid=MINE, shared=True)
    assert facts.key_writer is not None and "no ApiToken wrote" in facts.key_writer
    assert not facts.owned


def test_a_new_shared_secret_is_owned_by_its_first_writer_but_not_controlled() -> None:
    body = secrets.shared_write(
        WANT,
        secret=TokenSecret(full_token(OPERATOR_TOKEN)),
        token_id=OPERATOR_TOKEN,
        reference="dynatrace/operator-token",
        apitoken=apitoken(),
        existing=None,
    )
    meta = body["metadata"]
    assert meta["labels"]["dynatrace.apitokens.io/shared"] == "true"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "dynatrace-apitoken-operator"
    assert [ref["uid"] for ref in meta["ownerReferences"]] == [MINE]
    assert meta["ownerReferences"][0]["controller"] is False
    assert json.loads(meta["annotations"][writer_annotation("apiToken")]) == {
        "apitoken": "dynatrace/operator-token",
        "uid": MINE,
        "tokenId": OPERATOR_TOKEN,
    }
    assert set(body["data"]) == {"apiToken"}
    facts = secrets.facts("dynakube", body, key="apiToken", owner_uid=MINE, shared=True)
    assert facts.owned and facts.value_token_id == OPERATOR_TOKEN


def test_joining_writes_only_its_key_onto_the_version_read() -> None:
    existing = shared_secret(dataIngestToken=(THEIRS, INGEST_TOKEN))
    patch = secrets.shared_write(
        WANT,
        secret=TokenSecret(full_token(OPERATOR_TOKEN)),
        token_id=OPERATOR_TOKEN,
        reference="dynatrace/operator-token",
        apitoken=apitoken(),
        existing=existing,
    )
    assert set(patch["data"]) == {"apiToken"}, "the other writer's key is not in the patch"
    assert patch["metadata"]["resourceVersion"] == "41"
    assert writer_annotation("dataIngestToken") not in patch["metadata"]["annotations"]
    assert [ref["uid"] for ref in patch["metadata"]["ownerReferences"]] == [THEIRS, MINE]


def test_a_joined_secret_the_operator_did_not_make_gets_no_owners() -> None:
    existing = shared_secret(made_by_operator=False)
    patch = secrets.shared_write(
        WANT,
        secret=TokenSecret(full_token(OPERATOR_TOKEN)),
        token_id=OPERATOR_TOKEN,
        reference="dynatrace/operator-token",
        apitoken=apitoken(),
        existing=existing,
    )
    assert "ownerReferences" not in patch["metadata"], "the user's Secret must never be garbage collected"


@pytest.mark.parametrize(
    ("existing", "why"),
    [
        (shared_secret(apiToken=(THEIRS, INGEST_TOKEN)), "written by dynatrace/"),
        (shared_secret(made_by_operator=False, joinable=False), "does not let ApiTokens in"),
    ],
    ids=["another writer's key", "a Secret that did not opt in"],
)
def test_a_write_never_takes_what_is_not_its_to_take(existing: dict[str, Any], why: str) -> None:
    with pytest.raises(secrets.SecretKeyTaken, match=why):
        secrets.shared_write(
            WANT,
            secret=TokenSecret(full_token(OPERATOR_TOKEN)),
            token_id=OPERATOR_TOKEN,
            reference="dynatrace/operator-token",
            apitoken=apitoken(),
            existing=existing,
        )


def test_leaving_removes_only_its_own_keys() -> None:
    existing = shared_secret(
        apiToken=(MINE, OPERATOR_TOKEN),
        paasToken=(MINE, OPERATOR_TOKEN),
        dataIngestToken=(THEIRS, INGEST_TOKEN),
    )
    patch = secrets.shared_leave(existing, owner_uid=MINE)
    assert patch is not None
    assert patch["data"] == {"apiToken": None, "paasToken": None}
    assert patch["metadata"]["annotations"] == {
        writer_annotation("apiToken"): None,
        writer_annotation("paasToken"): None,
    }
    assert patch["metadata"]["resourceVersion"] == "41"
    keeping = secrets.shared_leave(existing, owner_uid=MINE, keep="apiToken")
    assert keeping is not None and keeping["data"] == {"paasToken": None}
    assert secrets.shared_leave(shared_secret(dataIngestToken=(THEIRS, INGEST_TOKEN)), owner_uid=MINE) is None


def test_an_owned_secret_is_untouched_by_the_shared_rules() -> None:
    owned = replace(WANT, secret_shared=False)
    body = secrets.body(
        owned,
        secret=TokenSecret(full_token(OPERATOR_TOKEN)),
        token_id=OPERATOR_TOKEN,
        reference="dynatrace/operator-token",
        apitoken=apitoken(),
    )
    assert body["metadata"]["ownerReferences"][0]["controller"] is True
    assert "dynatrace.apitokens.io/shared" not in body["metadata"]["labels"]
