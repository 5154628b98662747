"""The shipped Argo CD health check (deploy/gitops/argocd-health.lua) on handcrafted ApiTokens.

Run in gopher-lua the way Argo CD runs argocd-cm scripts (no standard libraries) and with open libraries
(`resource.customizations.useOpenLibs`): the script must give the same answer in both. kstatus' answer on
the same object is asserted beside it, so where the two differ is written down.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.gitops import ArgoHealth, KStatus

MISSING = object()


def cond(
    kind: str, status: str, reason: str, message: str = "", generation: int | None = 3
) -> dict[str, Any]:
    found: dict[str, Any] = {"type": kind, "status": status, "reason": reason, "message": message}
    if generation is not None:
        found["observedGeneration"] = generation
    return found


def kstatus_conditions(
    health: str, reason: str, message: str, generation: int | None = 3
) -> list[dict[str, Any]]:
    """Ready, Reconciling, Stalled as the operator writes them (reconcile/status.py)."""
    return [
        cond("Ready", "True" if health == "Ready" else "False", reason, message, generation),
        cond("Reconciling", "True", reason, message, generation)
        if health == "Reconciling"
        else cond("Reconciling", "False", "NoReconciling", "", generation),
        cond("Stalled", "True", reason, message, generation)
        if health == "Stalled"
        else cond("Stalled", "False", "NoStalled", "", generation),
    ]


def token(
    *,
    generation: int | None = 3,
    observed: Any = MISSING,
    conditions: Any = MISSING,
    status: Any = MISSING,
    deleting: bool = False,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "t", "namespace": "ns", "uid": "u-1", "finalizers": ["f"]}
    if generation is not None:
        metadata["generation"] = generation
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    body: dict[str, Any] = {
        "apiVersion": "dynatrace.apitokens.io/v1alpha1",
        "kind": "ApiToken",
        "metadata": metadata,
        "spec": {"name": "t", "scopes": ["metrics.read"]},
    }
    if status is not MISSING:
        body["status"] = status
    elif conditions is not MISSING or observed is not MISSING:
        body["status"] = {"id": "dt0c01.ABC"}
        if conditions is not MISSING:
            body["status"]["conditions"] = conditions
        if observed is not MISSING:
            body["status"]["observedGeneration"] = observed
    return body


READY = kstatus_conditions("Ready", "Ready", "token dt0c01.ABC is in sync")
WAITING = "Waiting for the operator to handle the ApiToken"
PENDING_DELETION = "Pending deletion: the operator is deleting the token"

# id, object, (Argo CD status, message), kstatus status
Case = tuple[str, dict[str, Any], tuple[str, str], str]
CASES: list[Case] = [
    ("no status", token(), ("Progressing", WAITING), "Current"),
    ("empty status", token(status={}), ("Progressing", WAITING), "Current"),
    ("no conditions", token(observed=3), ("Progressing", WAITING), "Current"),
    # A CRD default of status.observedGeneration: 0 would make kstatus see a new object as InProgress.
    ("defaulted status", token(status={"observedGeneration": 0}), ("Progressing", WAITING), "InProgress"),
    ("empty conditions", token(observed=3, conditions=[]), ("Progressing", WAITING), "Current"),
    (
        "ready",
        token(observed=3, conditions=READY),
        ("Healthy", "Ready: token dt0c01.ABC is in sync"),
        "Current",
    ),
    (
        "ready, only the conditions carry observedGeneration",
        token(conditions=READY),
        ("Healthy", "Ready: token dt0c01.ABC is in sync"),
        "Current",
    ),
    (
        "ready, no generation anywhere (not from an API server)",
        token(generation=None, conditions=kstatus_conditions("Ready", "Ready", "in sync", generation=None)),
        ("Healthy", "Ready: in sync"),
        "Current",
    ),
    (
        "ready, but nothing says which generation",
        token(conditions=kstatus_conditions("Ready", "Ready", "in sync", generation=None)),
        ("Progressing", "Ready: in sync"),
        "Current",
    ),
    (
        "ready for an older generation",
        token(generation=4, observed=3, conditions=READY),
        ("Progressing", "Waiting for the operator to handle generation 4 (last handled: 3)"),
        "InProgress",
    ),
    (
        "stale status.observedGeneration wins over the conditions'",
        token(generation=4, observed=3, conditions=kstatus_conditions("Ready", "Ready", "x", generation=4)),
        ("Progressing", "Waiting for the operator to handle generation 4 (last handled: 3)"),
        "InProgress",
    ),
    (
        "creating",
        token(conditions=kstatus_conditions("Reconciling", "Creating", "creating a token: none yet")),
        ("Progressing", "Creating: creating a token: none yet"),
        "InProgress",
    ),
    (
        "throttled",
        token(observed=3, conditions=kstatus_conditions("Reconciling", "Throttled", "retrying in 10 s")),
        ("Progressing", "Throttled: retrying in 10 s"),
        "InProgress",
    ),
    (
        "stalled",
        token(observed=3, conditions=kstatus_conditions("Stalled", "RejectedByDynatrace", "unknown scope")),
        ("Degraded", "RejectedByDynatrace: unknown scope"),
        "Failed",
    ),
    (
        "stalled without a message",
        token(observed=3, conditions=kstatus_conditions("Stalled", "PolicyDenied", "")),
        ("Degraded", "PolicyDenied"),
        "Failed",
    ),
    (
        "stalled for an older generation: the new spec may fix it",
        token(generation=4, observed=3, conditions=kstatus_conditions("Stalled", "InvalidSpec", "bad")),
        ("Progressing", "Waiting for the operator to handle generation 4 (last handled: 3)"),
        "InProgress",
    ),
    (
        "ready False without Reconciling or Stalled",
        token(observed=3, conditions=[cond("Ready", "False", "Creating", "on its way")]),
        ("Progressing", "Creating: on its way"),
        "InProgress",
    ),
    (
        "ready Unknown",
        token(observed=3, conditions=[cond("Ready", "Unknown", "Checking")]),
        ("Progressing", "Checking"),
        "InProgress",
    ),
    ("deleting, no status", token(deleting=True), ("Progressing", PENDING_DELETION), "Terminating"),
    (
        "deleting while ready",
        token(observed=3, conditions=READY, deleting=True),
        ("Progressing", PENDING_DELETION),
        "Terminating",
    ),
    (
        "deleting, blocked",
        token(observed=3, deleting=True, conditions=kstatus_conditions("Stalled", "DeleteBlocked", "no way")),
        ("Progressing", PENDING_DELETION),
        "Terminating",
    ),
]


@pytest.mark.parametrize("open_libs", [False, True], ids=["argocd-cm default", "useOpenLibs"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_health_script(argo_health: ArgoHealth, kstatus: KStatus, case: Case, open_libs: bool) -> None:
    _, obj, expected, kstatus_expected = case
    assert argo_health(obj, open_libs=open_libs) == expected
    assert kstatus(obj)[0] == kstatus_expected
