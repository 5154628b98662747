"""Exactly one token per object whatever crashes: kill -9 at each step of a create and of a replacement."""

from __future__ import annotations

import pytest

from apitoken_operator.controller.failpoints import CREATE_STEPS as CRASH_STEPS
from tests.fixtures.cluster import wait_until
from tests.fixtures.operator import OperatorEnv

pytestmark = pytest.mark.controlplane

SPEC = {"name": "crash token", "scopes": ["metrics.read"], "enabled": True, "expirationDate": "now+30d"}
KILLED = 137


def assert_exactly_one_token_in_the_secret(env: OperatorEnv, name: str) -> str:
    body = env.wait_ready(name)
    token_id = body["status"]["id"]
    secret = env.secret_value(name)
    assert secret is not None and secret.token_id == token_id
    assert env.emulator.emulator.record_of(secret) is not None, "the stored secret is not a live token"
    assert [t.id for t in env.live_tokens()] == [token_id], "orphan or duplicate tokens in Dynatrace"
    assert body["status"].get("pendingCreate") is None
    return str(token_id)


@pytest.mark.parametrize("step", CRASH_STEPS)
def test_crash_during_create_then_restart(operator_env: OperatorEnv, step: str):
    operator_env.start(crash_at=step)
    operator_env.apply("sample", SPEC)
    assert operator_env.wait_exit() == KILLED
    operator_env.start()
    assert_exactly_one_token_in_the_secret(operator_env, "sample")


@pytest.mark.parametrize("step", CRASH_STEPS)
def test_crash_during_replacement_then_restart(operator_env: OperatorEnv, step: str):
    operator_env.start()
    operator_env.apply("sample", SPEC)
    old = assert_exactly_one_token_in_the_secret(operator_env, "sample")
    operator_env.stop()
    operator_env.start(crash_at=step)
    operator_env.patch_spec("sample", {"expirationDate": "now+60d"})
    assert operator_env.wait_exit() == KILLED
    operator_env.start()
    wait_until(
        lambda: (operator_env.get("sample") or {}).get("status", {}).get("id") not in (None, old),
        what="the replacement token",
    )
    new = assert_exactly_one_token_in_the_secret(operator_env, "sample")
    assert new != old
    assert operator_env.get("sample")["status"]["requestedExpirationDate"] == "now+60d"


def test_create_accepted_but_response_dropped_still_ends_with_one_token(operator_env: OperatorEnv):
    operator_env.emulator.faults.update(drop_response_ratio=1.0, operations=["create"])
    operator_env.start()
    operator_env.apply("sample", SPEC)
    wait_until(lambda: operator_env.emulator.counters.count("create") >= 1, what="a create call")
    condition = operator_env.wait_condition("sample", "Reconciling", "True")
    assert condition["reason"] in ("DynatraceUnavailable", "Creating")
    assert len(operator_env.live_tokens()) == 1  # Dynatrace made it, the operator never heard
    operator_env.emulator.faults.reset()
    assert_exactly_one_token_in_the_secret(operator_env, "sample")
    assert any(e.reason == "LostCreateCleanedUp" for e in operator_env.events("sample"))
