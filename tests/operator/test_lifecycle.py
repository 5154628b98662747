"""The ApiToken lifecycle on a real API server with the operator as its own process."""

from __future__ import annotations

import pytest

from tests.fixtures.cluster import wait_until
from tests.fixtures.operator import OperatorEnv, settle

pytestmark = pytest.mark.controlplane

SPEC = {"name": "ci token", "scopes": ["metrics.read", "entities.read"], "enabled": True}


def test_create_gives_a_ready_token_whose_secret_works_and_status_tells_the_truth(operator_env: OperatorEnv):
    operator_env.start("--drift-interval", "1")
    operator_env.apply("sample", SPEC)
    body = operator_env.wait_ready("sample")
    assert operator_env.calls("create") == 1 and operator_env.calls("get") == 0  # no GET per token
    # The dates Dynatrace keeps (creationDate, ...) come with the next listing, not a GET per token.
    body = wait_until(
        lambda: (b := operator_env.get("sample")) and b["status"].get("creationDate") and b,
        what="the creation date from the next listing",
    )
    status = body["status"]
    secret = operator_env.secret_value("sample")
    assert secret is not None and secret.token_id == status["id"]
    assert secret.reveal() == secret.reveal().strip()
    record = operator_env.emulator.emulator.record_of(secret)  # the emulator accepts the stored secret
    assert record is not None and record.enabled
    assert record.id == status["id"]
    assert record.name == "ci token" and set(record.scopes) == {"metrics.read", "entities.read"}
    from apitoken_operator.dynatrace.dates import format_date

    assert status["owner"] == record.owner
    assert status["creationDate"] == format_date(record.creation_date)
    assert status["secretName"] == "sample"
    assert status["observedGeneration"] == body["metadata"]["generation"]
    kube_secret = operator_env.core.read_namespaced_secret("sample", operator_env.namespace)
    assert kube_secret.metadata.labels["app.kubernetes.io/managed-by"] == "dynatrace-apitoken-operator"
    assert kube_secret.metadata.annotations["dynatrace.apitokens.io/token-id"] == status["id"]
    assert kube_secret.metadata.owner_references[0].uid == body["metadata"]["uid"]
    assert len(operator_env.live_tokens()) == 1
    assert operator_env.calls("create") == 1
    assert any(e.reason == "Created" for e in operator_env.events("sample"))


def test_enabled_false_is_honoured(operator_env: OperatorEnv):
    operator_env.start()
    operator_env.apply("off", {**SPEC, "enabled": False})
    status = operator_env.wait_ready("off")["status"]
    record = operator_env.emulator.emulator.record_of(status["id"])
    assert record is not None and record.enabled is False
    assert operator_env.calls("create") == 1 and operator_env.calls("update") == 1


def test_a_change_of_name_scopes_and_enabled_is_one_put(operator_env: OperatorEnv):
    operator_env.start()
    operator_env.apply("sample", SPEC)
    first = operator_env.wait_ready("sample")["status"]["id"]
    puts = operator_env.calls("update")
    operator_env.patch_spec("sample", {"name": "renamed", "scopes": ["logs.read"], "enabled": False})
    body = operator_env.wait_ready("sample")
    settle()
    assert operator_env.calls("update") - puts == 1
    record = operator_env.emulator.emulator.record_of(first)
    assert body["status"]["id"] == first
    assert record.name == "renamed" and record.scopes == ("logs.read",) and record.enabled is False
    assert any(e.reason == "Updated" for e in operator_env.events("sample"))


def test_delete_removes_the_token_and_the_secret_is_garbage_collected(operator_env: OperatorEnv):
    operator_env.start()
    operator_env.apply("sample", SPEC)
    token_id = operator_env.wait_ready("sample")["status"]["id"]
    operator_env.delete("sample")
    operator_env.wait_gone("sample")
    assert operator_env.emulator.emulator.record_of(token_id) is None
    wait_until(
        lambda: operator_env.secret_value("sample") is None, timeout=60, what="the Secret to be collected"
    )


def test_orphan_policy_leaves_the_token(operator_env: OperatorEnv):
    operator_env.start()
    operator_env.apply("keep", {**SPEC, "deletionPolicy": "Orphan"})
    token_id = operator_env.wait_ready("keep")["status"]["id"]
    operator_env.delete("keep")
    operator_env.wait_gone("keep")
    assert operator_env.emulator.emulator.record_of(token_id) is not None


def test_expiration_change_replaces_the_token_leaving_exactly_one(operator_env: OperatorEnv):
    operator_env.start()
    operator_env.apply("sample", {**SPEC, "expirationDate": "now+30d"})
    old = operator_env.wait_ready("sample")["status"]["id"]
    operator_env.patch_spec("sample", {"expirationDate": "now+60d"})
    body = wait_until(
        lambda: (b := operator_env.wait_ready("sample"))["status"]["id"] != old and b, what="a new token id"
    )
    new = body["status"]["id"]
    assert [t.id for t in operator_env.live_tokens()] == [new]
    secret = operator_env.secret_value("sample")
    assert secret is not None and secret.token_id == new
    assert body["status"]["requestedExpirationDate"] == "now+60d"
    assert any(e.reason == "Replaced" for e in operator_env.events("sample"))


def test_secret_deleted_by_someone_replaces_the_token(operator_env: OperatorEnv):
    operator_env.start()
    operator_env.apply("sample", SPEC)
    old = operator_env.wait_ready("sample")["status"]["id"]
    operator_env.core.delete_namespaced_secret("sample", operator_env.namespace)
    wait_until(
        lambda: (s := operator_env.secret_value("sample")) is not None and s.token_id != old,
        what="a new secret in the Secret",
    )
    new = operator_env.secret_value("sample")
    wait_until(
        lambda: [t.id for t in operator_env.live_tokens()] == [new.token_id], what="exactly the new token"
    )


def test_secret_labels_edited_by_someone_are_restored(operator_env: OperatorEnv):
    operator_env.start()
    operator_env.apply("sample", {**SPEC, "secret": {"labels": {"team": "a"}}})
    token_id = operator_env.wait_ready("sample")["status"]["id"]
    operator_env.core.patch_namespaced_secret(
        "sample", operator_env.namespace, {"metadata": {"labels": {"team": "b"}}}
    )
    wait_until(
        lambda: (
            operator_env.core.read_namespaced_secret("sample", operator_env.namespace).metadata.labels.get(
                "team"
            )
            == "a"
        ),
        what="the label to be restored",
    )
    assert [t.id for t in operator_env.live_tokens()] == [token_id]


def test_renamed_secret_moves_without_a_new_token(operator_env: OperatorEnv):
    operator_env.start()
    operator_env.apply("sample", SPEC)
    token_id = operator_env.wait_ready("sample")["status"]["id"]
    operator_env.patch_spec("sample", {"secret": {"name": "moved", "key": "apiToken"}})
    wait_until(lambda: operator_env.secret_value("sample") is None, what="the old Secret to go")
    moved = operator_env.secret_value("moved", key="apiToken")
    assert moved is not None and moved.token_id == token_id
    assert operator_env.wait_ready("sample")["status"]["secretName"] == "moved"
    assert operator_env.calls("create") == 1


def test_secret_name_taken_by_an_unrelated_secret_is_refused(operator_env: OperatorEnv):
    operator_env.core.create_namespaced_secret(
        operator_env.namespace, {"metadata": {"name": "taken"}, "stringData": {"token": "mine"}}
    )
    operator_env.start()
    operator_env.apply("sample", {**SPEC, "secret": {"name": "taken"}})
    condition = operator_env.wait_condition("sample", "Stalled", "True", "SecretNameTaken")
    assert "taken" in condition["message"]
    assert operator_env.core.read_namespaced_secret("taken", operator_env.namespace).data == {
        "token": "bWluZQ=="
    }
    assert operator_env.calls("create") == 0


def test_events_warnings_only_posts_no_event_for_a_routine_create_or_delete(operator_env: OperatorEnv):
    operator_env.start("--events", "warnings")
    operator_env.apply("quiet", SPEC)
    operator_env.apply("broken", {**SPEC, "scopes": ["no.such.scope"]})
    operator_env.wait_ready("quiet")
    operator_env.wait_condition("broken", "Stalled", "True", "RejectedByDynatrace")
    operator_env.delete("quiet")
    operator_env.wait_gone("quiet")
    wait_until(lambda: operator_env.events("broken"), what="the Warning Event")
    assert [(e.type, e.reason) for e in operator_env.events("broken")] == [("Warning", "RejectedByDynatrace")]
    assert operator_env.events("quiet") == []
