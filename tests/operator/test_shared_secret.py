"""A DynaKube's Secret built by two ApiTokens (spec.secret.mode Shared), on the real control plane: each
writes its own key, rotation of one leaves the other alone, and each deletion takes only its key.

Checked as the Dynatrace Operator reads that Secret: every key holds a live token, by lookup."""

from __future__ import annotations

import pytest

from tests.fixtures.cluster import wait_until
from tests.fixtures.operator import OperatorEnv

pytestmark = pytest.mark.controlplane

SECRET = "dynakube"
CONNECTION = {"connectionSecretRef": {"name": "dynatrace-connection"}}
OPERATOR_TOKEN = {
    "name": "dynakube operator",
    "enabled": True,
    "scopes": [
        "InstallerDownload",
        "DataExport",
        "settings.read",
        "settings.write",
        "activeGateTokenManagement.create",
    ],
    "secret": {"name": SECRET, "key": "apiToken", "mode": "Shared"},
    **CONNECTION,
}
DATA_INGEST = {
    "name": "dynakube data ingest",
    "enabled": True,
    "scopes": ["metrics.ingest", "logs.ingest", "openTelemetryTrace.ingest"],
    "secret": {"name": SECRET, "key": "dataIngestToken", "mode": "Shared"},
    **CONNECTION,
}


def keys(env: OperatorEnv) -> dict[str, str] | None:
    return env.secret_data(SECRET)


def every_key_live(env: OperatorEnv, expected: dict[str, str]) -> bool:
    """The Secret holds exactly these keys, each the live, enabled token named (by lookup)."""
    data = keys(env) or {}
    if set(data) != set(expected):
        return False
    for key, token_id in expected.items():
        found = env.lookup(data[key])
        if found is None or found.get("id") != token_id or found.get("enabled") is False:
            return False
    return True


def test_a_dynakube_secret_built_rotated_key_by_key_and_torn_down(operator_env: OperatorEnv) -> None:
    env = operator_env
    env.start(
        "--policy-allow-escalating-scope",
        "settings.read",
        "--policy-allow-escalating-scope",
        "settings.write",
        "--policy-allow-escalating-scope",
        "activeGateTokenManagement.create",
    )
    env.apply("operator-token", OPERATOR_TOKEN)
    env.apply("data-ingest", DATA_INGEST)
    operator_id = env.wait_ready("operator-token")["status"]["id"]
    ingest_id = env.wait_ready("data-ingest")["status"]["id"]
    wait_until(
        lambda: every_key_live(env, {"apiToken": operator_id, "dataIngestToken": ingest_id}),
        what="both keys in the one Secret, each a live token",
    )
    secret = env.core.read_namespaced_secret(SECRET, env.namespace)
    assert not any(ref.controller for ref in secret.metadata.owner_references or ()), "no single owner"
    assert {ref.name for ref in secret.metadata.owner_references} == {"operator-token", "data-ingest"}

    # a third ApiToken asking for a key that is taken is refused, and nothing changes
    env.apply("intruder", {**DATA_INGEST, "name": "intruder"})
    stalled = env.wait_condition("intruder", "Stalled", "True")
    assert stalled["reason"] == "SecretKeyTaken"
    assert f"{env.namespace}/data-ingest" in stalled["message"], "the message names the key's writer"
    assert every_key_live(env, {"apiToken": operator_id, "dataIngestToken": ingest_id})
    env.delete("intruder")
    env.wait_gone("intruder")
    assert every_key_live(env, {"apiToken": operator_id, "dataIngestToken": ingest_id})

    # rotate the data-ingest token: its key changes, the operator token's does not
    env.annotate("data-ingest", **{"dynatrace.apitokens.io/rotate": "1"})
    rotated = wait_until(
        lambda: (b := env.get("data-ingest")) and b["status"].get("id") not in (None, ingest_id) and b,
        what="the data-ingest token rotated",
    )["status"]["id"]
    wait_until(
        lambda: every_key_live(env, {"apiToken": operator_id, "dataIngestToken": rotated}),
        what="the rotated key live, the other key untouched",
    )
    assert (env.get("operator-token") or {})["status"]["id"] == operator_id

    # somebody removes the operator token's key by hand: the Secret's watch brings its writer back, which
    # replaces the token (a secret cannot be read back) and writes only its own key again
    env.core.patch_namespaced_secret(SECRET, env.namespace, {"data": {"apiToken": None}})
    replaced = wait_until(
        lambda: (b := env.get("operator-token")) and b["status"].get("id") not in (None, operator_id) and b,
        what="the operator token replaced after its key was removed",
    )["status"]["id"]
    wait_until(
        lambda: every_key_live(env, {"apiToken": replaced, "dataIngestToken": rotated}),
        what="the key written again, the other untouched",
    )
    operator_id = replaced

    # the operator token goes: only its key leaves the Secret, and its token is revoked
    env.delete("operator-token")
    env.wait_gone("operator-token")
    wait_until(
        lambda: set(keys(env) or {}) == {"dataIngestToken"}, what="only the operator token's key removed"
    )
    assert every_key_live(env, {"dataIngestToken": rotated})
    assert env.emulator.emulator.record_of(operator_id) is None

    # the last writer goes: the Secret the operator made goes with it
    env.delete("data-ingest")
    env.wait_gone("data-ingest")
    wait_until(lambda: keys(env) is None, timeout=60, what="the shared Secret collected with its last writer")


def test_a_secret_made_by_somebody_else_is_joined_only_when_it_opts_in(operator_env: OperatorEnv) -> None:
    env = operator_env
    env.start()
    body = {"metadata": {"name": SECRET}, "stringData": {"tenant": "kept"}}
    env.core.create_namespaced_secret(env.namespace, body)
    ingest = {**DATA_INGEST, "scopes": ["metrics.ingest"]}
    env.apply("data-ingest", ingest)
    stalled = env.wait_condition("data-ingest", "Stalled", "True")
    assert (
        stalled["reason"] == "SecretNameTaken" and "dynatrace.apitokens.io/shared=true" in stalled["message"]
    )
    assert env.calls("create") == 0, "no token is made while its Secret is refused"

    env.core.patch_namespaced_secret(
        SECRET, env.namespace, {"metadata": {"labels": {"dynatrace.apitokens.io/shared": "true"}}}
    )
    env.annotate("data-ingest", **{"dynatrace.apitokens.io/check": "1"})
    token_id = env.wait_ready("data-ingest")["status"]["id"]
    wait_until(lambda: set(keys(env) or {}) == {"tenant", "dataIngestToken"}, what="the key joined")
    assert (keys(env) or {})["tenant"] == "kept"
    found = env.lookup((keys(env) or {})["dataIngestToken"])
    assert found is not None and found["id"] == token_id

    env.delete("data-ingest")
    env.wait_gone("data-ingest")
    wait_until(lambda: keys(env) == {"tenant": "kept"}, what="its key removed, the user's Secret kept")
