"""Bad input gets a clear message (rejected up front, or a condition and Event) and disturbs nothing else."""

from __future__ import annotations

import pytest
from kubernetes.client import ApiException

from tests.fixtures.operator import OperatorEnv

pytestmark = pytest.mark.controlplane

GOOD = {"name": "good", "scopes": ["metrics.read"], "enabled": True}

#: (case, spec, text the API server's message must contain)
REJECTED_BY_THE_API_SERVER = [
    ("missing name", {"scopes": ["metrics.read"]}, "spec.name: Required value"),
    ("empty name", {"name": "", "scopes": ["metrics.read"]}, "spec.name"),
    ("name with surrounding whitespace", {"name": " padded ", "scopes": ["metrics.read"]}, "whitespace"),
    ("name too long", {"name": "x" * 256, "scopes": ["metrics.read"]}, "spec.name: Too long"),
    ("missing scopes", {"name": "n"}, "spec.scopes: Required value"),
    ("empty scopes", {"name": "n", "scopes": []}, "spec.scopes"),
    ("duplicate scopes", {"name": "n", "scopes": ["metrics.read", "metrics.read"]}, "Duplicate value"),
    ("scope with spaces", {"name": "n", "scopes": ["metrics read"]}, "spec.scopes[0]"),
    ("scope not a string", {"name": "n", "scopes": [42]}, "spec.scopes[0]"),
    ("enabled not a boolean", {"name": "n", "scopes": ["a"], "enabled": "yes"}, "spec.enabled"),
    (
        "unknown deletion policy",
        {"name": "n", "scopes": ["a"], "deletionPolicy": "Keep"},
        "spec.deletionPolicy",
    ),
    ("expiry in words", {"name": "n", "scopes": ["a"], "expirationDate": "tomorrow"}, "spec.expirationDate"),
    (
        "relative expiry in the past",
        {"name": "n", "scopes": ["a"], "expirationDate": "now-1d"},
        "spec.expirationDate",
    ),
    ("secret key with a slash", {"name": "n", "scopes": ["a"], "secret": {"key": "a/b"}}, "spec.secret.key"),
    (
        "secret name in capitals",
        {"name": "n", "scopes": ["a"], "secret": {"name": "Token"}},
        "spec.secret.name",
    ),
    (
        "connection without a name",
        {"name": "n", "scopes": ["a"], "connectionSecretRef": {}},
        "connectionSecretRef",
    ),
]


@pytest.mark.parametrize(
    ("case", "spec", "message"), REJECTED_BY_THE_API_SERVER, ids=[c[0] for c in REJECTED_BY_THE_API_SERVER]
)
def test_invalid_spec_is_rejected_by_the_api_server(
    operator_env: OperatorEnv, case: str, spec: dict, message: str
):
    with pytest.raises(ApiException) as rejected:
        operator_env.apply("bad", spec)
    assert rejected.value.status == 422, case
    assert message in rejected.value.body


def test_problems_reported_on_the_object_while_others_keep_reconciling(operator_env: OperatorEnv):
    operator_env.start()
    operator_env.apply("unknown-scope", {"name": "u", "scopes": ["no.such.scope"]})
    operator_env.apply(
        "past-expiry", {"name": "p", "scopes": ["metrics.read"], "expirationDate": "2020-01-01T00:00:00Z"}
    )
    operator_env.apply("admin-scope", {"name": "a", "scopes": ["apiTokens.write"]})
    operator_env.apply(
        "no-connection", {"name": "c", "scopes": ["metrics.read"], "connectionSecretRef": {"name": "nope"}}
    )
    operator_env.apply("good", GOOD)
    operator_env.wait_ready("good")
    expectations = {
        "unknown-scope": ("RejectedByDynatrace", "no.such.scope"),
        "past-expiry": ("RejectedByDynatrace", "expirationDate"),
        "admin-scope": ("PolicyDenied", "apiTokens.write"),
        "no-connection": ("ConnectionMissing", "nope"),
    }
    for name, (reason, mentioned) in expectations.items():
        stalled = operator_env.wait_condition(name, "Stalled", "True", reason)
        assert mentioned in stalled["message"], (name, stalled)
        ready = operator_env.condition(name, "Ready")
        assert ready["status"] == "False" and ready["reason"] == reason
    for name in ("unknown-scope", "past-expiry"):
        assert any(
            e.reason == "RejectedByDynatrace" and e.type == "Warning" for e in operator_env.events(name)
        )
    assert [t.name for t in operator_env.live_tokens()] == ["good"]


def test_a_fixed_spec_recovers_from_stalled(operator_env: OperatorEnv):
    operator_env.start()
    operator_env.apply("fixme", {"name": "f", "scopes": ["no.such.scope"], "enabled": True})
    operator_env.wait_condition("fixme", "Stalled", "True", "RejectedByDynatrace")
    operator_env.patch_spec("fixme", {"scopes": ["metrics.read"]})
    body = operator_env.wait_ready("fixme")
    assert operator_env.condition("fixme", "Stalled")["status"] == "False"
    assert [t.id for t in operator_env.live_tokens()] == [body["status"]["id"]]


def test_deletion_without_credentials_says_how_to_release(operator_env: OperatorEnv):
    operator_env.start()
    operator_env.apply("stuck", GOOD)
    token_id = operator_env.wait_ready("stuck")["status"]["id"]
    operator_env.core.delete_namespaced_secret("dynatrace-connection", operator_env.namespace)
    operator_env.delete("stuck")
    blocked = operator_env.wait_condition("stuck", "Stalled", "True", "DeleteBlocked")
    assert "dynatrace.apitokens.io/release=true" in blocked["message"]
    operator_env.custom.patch_namespaced_custom_object(
        "dynatrace.apitokens.io",
        "v1alpha1",
        operator_env.namespace,
        "apitokens",
        "stuck",
        {"metadata": {"annotations": {"dynatrace.apitokens.io/release": "true"}}},
    )
    operator_env.wait_gone("stuck")
    assert operator_env.emulator.emulator.record_of(token_id) is not None  # released, not deleted


def test_a_rotated_connection_token_is_picked_up_without_a_restart(operator_env: OperatorEnv):
    operator_env.start()
    operator_env.apply("first", GOOD)
    operator_env.wait_ready("first")
    new_admin = operator_env.emulator.create_token(
        "second admin", ["apiTokens.read", "apiTokens.write"], owner="admin@example.com"
    )
    operator_env.core.patch_namespaced_secret(
        "dynatrace-connection", operator_env.namespace, {"stringData": {"apiToken": new_admin.reveal()}}
    )
    old_admin = operator_env.emulator.emulator.record_of(operator_env.emulator.admin_token)
    operator_env.emulator.call(
        operator_env.emulator.store.update, old_admin, now=operator_env.emulator.clock(), enabled=False
    )  # the old one is revoked
    operator_env.apply("second", {**GOOD, "name": "second"})
    operator_env.wait_ready("second")
    assert "Traceback" not in operator_env.log_text()
