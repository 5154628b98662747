"""GitOps health of real ApiTokens, judged by the GitOps tools' own code.

The objects come from a real lifecycle (API server, operator process, emulator) and are judged by
kstatus `status.Compute` (what Flux runs) and by the shipped Argo CD Lua check in gopher-lua, set up as
Argo CD sets it up. Freezing a moment means stopping the operator (or crashing it at a step).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.gitops import ArgoHealth, KStatus
from tests.fixtures.operator import OperatorEnv

pytestmark = pytest.mark.controlplane

SPEC = {"name": "gitops token", "scopes": ["metrics.read"], "enabled": True}
KILLED = 137  # the operator's crashpoint exit code (os._exit(137), as kill -9 reports it)


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == kind)


def snapshot(env: OperatorEnv, name: str) -> dict[str, Any]:
    body = env.get(name)
    assert body is not None
    return body


def test_health_through_a_lifecycle(
    operator_env: OperatorEnv, kstatus: KStatus, argo_health: ArgoHealth
) -> None:
    env = operator_env

    # Applied, operator not running: the CRD defaults status.observedGeneration to 0, behind generation 1,
    # so both tools say "in progress" until the operator's first status write.
    env.apply("life", SPEC)
    fresh = snapshot(env, "life")
    assert fresh["status"] == {"observedGeneration": 0}
    assert argo_health(fresh)[0] == "Progressing"
    assert kstatus(fresh)[0] == "InProgress"

    # The operator records its create intent (Reconciling=True, Creating) and dies before the call.
    env.start(crash_at="after-intent")
    assert env.wait_exit() == KILLED
    creating = snapshot(env, "life")
    reconciling = condition(creating, "Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "Creating")
    assert kstatus(creating) == ("InProgress", reconciling["message"])
    assert argo_health(creating) == ("Progressing", f"Creating: {reconciling['message']}")

    # Restarted, it finishes: Ready for the current generation.
    env.start()
    ready = env.wait_ready("life")
    assert kstatus(ready) == ("Current", "Resource is Ready")
    status, message = argo_health(ready)
    assert status == "Healthy" and message == f"Ready: token {ready['status']['id']} is in sync"

    # A spec change the (stopped) operator has not handled: observedGeneration is stale.
    env.stop()
    env.patch_spec("life", {"name": "gitops token renamed"})
    stale = snapshot(env, "life")
    generation = stale["metadata"]["generation"]
    assert stale["status"]["observedGeneration"] == generation - 1
    assert condition(stale, "Ready")["status"] == "True"  # still True: the old generation was fine
    assert kstatus(stale) == (
        "InProgress",
        f"ApiToken generation is {generation}, but latest observed generation is {generation - 1}",
    )
    assert argo_health(stale) == (
        "Progressing",
        f"Waiting for the operator to handle generation {generation} (last handled: {generation - 1})",
    )

    # Handled: back to Current / Healthy.
    env.start()
    handled = env.wait_ready("life")
    assert handled["metadata"]["generation"] == generation
    assert kstatus(handled)[0] == "Current"
    assert argo_health(handled)[0] == "Healthy"

    # Deleted while the operator is stopped: the finalizer keeps it, with a deletionTimestamp.
    env.stop()
    env.delete("life")
    deleting = snapshot(env, "life")
    assert deleting["metadata"].get("deletionTimestamp")
    assert deleting["metadata"]["finalizers"]
    assert condition(deleting, "Ready")["status"] == "True"  # nothing re-judged it yet
    assert kstatus(deleting) == ("Terminating", "Resource scheduled for deletion")
    assert argo_health(deleting) == ("Progressing", "Pending deletion: the operator is deleting the token")

    env.start()
    env.wait_gone("life")


def test_stalled_is_failed_and_degraded_until_fixed(
    operator_env: OperatorEnv, kstatus: KStatus, argo_health: ArgoHealth
) -> None:
    env = operator_env
    env.start()
    env.apply("bad", {**SPEC, "scopes": ["no.such.scope"]})
    stalled_condition = env.wait_condition("bad", "Stalled", "True", reason="RejectedByDynatrace")
    stalled = snapshot(env, "bad")
    assert stalled["status"]["observedGeneration"] == stalled["metadata"]["generation"]
    assert "no.such.scope" in stalled_condition["message"]
    assert kstatus(stalled) == ("Failed", stalled_condition["message"])
    assert argo_health(stalled) == ("Degraded", f"RejectedByDynatrace: {stalled_condition['message']}")

    # Fixing the spec: the stale Stalled condition no longer counts, then the token becomes Ready.
    env.stop()
    env.patch_spec("bad", {"scopes": ["metrics.read"]})
    fixing = snapshot(env, "bad")
    assert condition(fixing, "Stalled")["status"] == "True"
    assert kstatus(fixing)[0] == "InProgress"
    assert argo_health(fixing)[0] == "Progressing"

    env.start()
    fixed = env.wait_ready("bad")
    assert kstatus(fixed) == ("Current", "Resource is Ready")
    assert argo_health(fixed)[0] == "Healthy"
