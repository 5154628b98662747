"""A restarted operator knows every token its namespaces hold before it decides anything that depends on
them (its index is completed by a listing at start-up; kopf's watch delivers objects one by one)."""

from __future__ import annotations

import pytest

from apitoken_operator.reconcile.attention import CHECK_ANNOTATION
from tests.fixtures.operator import OperatorEnv

pytestmark = pytest.mark.controlplane

SPEC = {"name": "index token", "scopes": ["metrics.read"], "enabled": True}
LIMIT = "3"


def test_a_restarted_operator_counts_the_namespaces_tokens_before_it_creates_one(
    operator_env: OperatorEnv,
) -> None:
    env = operator_env
    env.start("--policy-max-tokens-per-namespace", LIMIT)
    held = {env.wait_ready(name)["status"]["id"] for name in ("z-1", "z-2", "z-3") if env.apply(name, SPEC)}
    env.stop()
    # Listed (and so delivered) first by the watch at the restart: etcd keeps objects in name order.
    env.apply("a-late", SPEC)
    env.start("--policy-max-tokens-per-namespace", LIMIT)
    condition = env.wait_condition("a-late", "Ready", "False", reason="QuotaExceeded")
    assert "already has 3 ApiTokens holding tokens" in condition["message"]
    assert (env.get("a-late") or {}).get("status", {}).get("id") is None
    assert {token.id for token in env.live_tokens()} == held  # nothing minted past the limit
    env.delete("z-1")
    env.wait_gone("z-1")
    # a place freed (the watch told the index): asked to look again, the object gets its token
    env.annotate("a-late", **{CHECK_ANNOTATION: "after-z-1"})
    assert env.wait_ready("a-late")["status"]["id"] not in held
