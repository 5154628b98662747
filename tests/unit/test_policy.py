"""policy_violation: what the operator-wide default connection may serve (table)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from apitoken_operator.reconcile.model import Desired
from apitoken_operator.reconcile.policy import policy_violation
from apitoken_operator.settings import ADMIN_SCOPES, PolicySettings

DEFAULT = PolicySettings()
WANT = Desired(name="web", scopes=frozenset({"metrics.ingest", "logs.ingest"}))


def scopes(*names: str) -> Desired:
    return replace(WANT, scopes=frozenset(names))


#: name, desired, namespace, policy, None when allowed, else phrases the message must contain
CASES: list[tuple[str, Desired, str, PolicySettings, tuple[str, ...] | None]] = [
    ("default policy allows ordinary scopes anywhere", WANT, "team-a", DEFAULT, None),
    (
        "default policy denies apiTokens.write",
        scopes("metrics.ingest", "apiTokens.write"),
        "team-a",
        DEFAULT,
        ("apiTokens.write", "ask the operator's administrators"),
    ),
    (
        "default policy denies TenantTokenManagement",
        scopes("TenantTokenManagement"),
        "team-a",
        DEFAULT,
        ("TenantTokenManagement",),
    ),
    (
        "both admin scopes are named, sorted",
        scopes("TenantTokenManagement", "apiTokens.write", "logs.ingest"),
        "team-a",
        DEFAULT,
        ("grant TenantTokenManagement, apiTokens.write;",),
    ),
    ("apiTokens.read is not an admin scope", scopes("apiTokens.read"), "team-a", DEFAULT, None),
    (
        "namespace outside the allowed globs",
        WANT,
        "sandbox",
        PolicySettings(allowed_namespaces=("team-*", "platform")),
        ("namespace 'sandbox'", "spec.connectionSecretRef"),
    ),
    (
        "namespace matching a glob",
        WANT,
        "team-b",
        PolicySettings(allowed_namespaces=("team-*", "platform")),
        None,
    ),
    (
        "namespace matching exactly",
        WANT,
        "platform",
        PolicySettings(allowed_namespaces=("team-*", "platform")),
        None,
    ),
    (
        "globs are case-sensitive",
        WANT,
        "Team-a",
        PolicySettings(allowed_namespaces=("team-*",)),
        ("namespace 'Team-a'",),
    ),
    (
        "the namespace is judged before the scopes",
        scopes("apiTokens.write"),
        "sandbox",
        PolicySettings(allowed_namespaces=("team-*",)),
        ("namespace 'sandbox'",),
    ),
    (
        "whitelist: a scope outside it is named",
        scopes("metrics.ingest", "entities.read"),
        "team-a",
        PolicySettings(allowed_scopes=("metrics.*", "logs.ingest")),
        ("grant entities.read;",),
    ),
    (
        "whitelist: every scope inside it",
        scopes("metrics.ingest", "metrics.read", "logs.ingest"),
        "team-a",
        PolicySettings(allowed_scopes=("metrics.*", "logs.ingest")),
        None,
    ),
    (
        "whitelist does not override the denied admin scopes",
        scopes("apiTokens.write"),
        "team-a",
        PolicySettings(allowed_scopes=("*",)),
        ("apiTokens.write",),
    ),
    (
        "denied and not whitelisted are each named once",
        scopes("apiTokens.write", "entities.read", "metrics.ingest"),
        "team-a",
        PolicySettings(allowed_scopes=("metrics.*",)),
        ("grant apiTokens.write, entities.read;",),
    ),
    (
        "an administrator may allow the admin scopes",
        scopes("apiTokens.write"),
        "team-a",
        PolicySettings(denied_scopes=()),
        None,
    ),
    (
        "personal access tokens refused by default",
        replace(WANT, personal_access_token=True),
        "team-a",
        DEFAULT,
        ("personal access tokens",),
    ),
    (
        "personal access tokens allowed when configured",
        replace(WANT, personal_access_token=True),
        "team-a",
        PolicySettings(allow_personal_access_tokens=True),
        None,
    ),
]


@pytest.mark.parametrize(
    ("desired", "namespace", "policy", "phrases"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_policy_violation(
    desired: Desired, namespace: str, policy: PolicySettings, phrases: tuple[str, ...] | None
) -> None:
    message = policy_violation(desired, namespace=namespace, policy=policy)
    if phrases is None:
        assert message is None
    else:
        assert message is not None
        for phrase in phrases:
            assert phrase in message


def test_admin_scopes_are_denied_by_default() -> None:
    assert set(DEFAULT.denied_scopes) == set(ADMIN_SCOPES) == {"apiTokens.write", "TenantTokenManagement"}
    assert DEFAULT.allow_personal_access_tokens is False


def test_allowed_scopes_are_not_named() -> None:
    message = policy_violation(scopes("metrics.ingest", "apiTokens.write"), namespace="a", policy=DEFAULT)
    assert message is not None and "metrics.ingest" not in message
