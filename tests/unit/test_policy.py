"""policy_violation: what the operator-wide default connection may serve (tables).

The default connection is a privileged credential and namespace users may be attackers: it grants from an
allow-list, never grants an escalating scope unless that exact name is lifted, and configuration extends
the deny list, never replaces it.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import pytest

from apitoken_emulator.catalog import load_scopes
from apitoken_operator import cli
from apitoken_operator.reconcile.model import Desired
from apitoken_operator.reconcile.policy import policy_violation, scope_allowed, scope_denied
from apitoken_operator.runner import settings_from
from apitoken_operator.settings import DEFAULT_ALLOWED_SCOPES, ESCALATING_SCOPES, PolicySettings

DEFAULT = PolicySettings()
WANT = Desired(name="web", scopes=frozenset({"metrics.ingest", "logs.ingest"}))


def scopes(*names: str) -> Desired:
    return replace(WANT, scopes=frozenset(names))


def run_args(*argv: str) -> argparse.Namespace:
    arguments = ["run", *argv]
    return cli.build_parser(arguments).parse_args(arguments)


#: name, desired, namespace, policy, None when allowed, else phrases the message must contain
CASES: list[tuple[str, Desired, str, PolicySettings, tuple[str, ...] | None]] = [
    ("default policy allows ordinary ingest scopes anywhere", WANT, "team-a", DEFAULT, None),
    (
        "default policy allows the shipped read scopes",
        scopes("metrics.read", "entities.read", "problems.read"),
        "team-a",
        DEFAULT,
        None,
    ),
    (
        "default policy denies apiTokens.write as escalating",
        scopes("metrics.ingest", "apiTokens.write"),
        "team-a",
        DEFAULT,
        ("apiTokens.write (escalating", "ask the operator's administrators"),
    ),
    (
        "apiTokens.read is escalating too (it lists every token)",
        scopes("apiTokens.read"),
        "team-a",
        DEFAULT,
        ("apiTokens.read (escalating",),
    ),
    (
        "a scope outside the shipped allow-list is refused, though not escalating",
        scopes("logs.read"),
        "team-a",
        DEFAULT,
        ("logs.read (not in the allowed scopes)",),
    ),
    (
        "an unknown scope is not allowed by default",
        scopes("no.such.scope"),
        "team-a",
        DEFAULT,
        ("no.such.scope (not in the allowed scopes)",),
    ),
    (
        "escalating and not allowed are each named once, sorted",
        scopes("TenantTokenManagement", "apiTokens.write", "logs.read", "logs.ingest"),
        "team-a",
        DEFAULT,
        ("grant TenantTokenManagement, apiTokens.write (escalating", "; logs.read (not in the allowed"),
    ),
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
        "namespace globs are case-sensitive",
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
        "a configured allow-list replaces the shipped one",
        scopes("metrics.ingest", "entities.read"),
        "team-a",
        PolicySettings(allowed_scopes=("metrics.*", "logs.ingest")),
        ("entities.read (not in the allowed scopes)",),
    ),
    (
        "a configured allow-list with patterns",
        scopes("metrics.ingest", "metrics.read", "logs.ingest"),
        "team-a",
        PolicySettings(allowed_scopes=("metrics.*", "logs.ingest")),
        None,
    ),
    (
        "an empty allow-list allows nothing",
        WANT,
        "team-a",
        PolicySettings(allowed_scopes=()),
        ("not in the allowed scopes",),
    ),
    (
        "* in the allow-list does not include an escalating scope",
        scopes("apiTokens.write", "settings.write", "metrics.read"),
        "team-a",
        PolicySettings(allowed_scopes=("*",)),
        ("apiTokens.write, settings.write (escalating",),
    ),
    (
        "a pattern in the allow-list does not include an escalating scope",
        scopes("settings.read"),
        "team-a",
        PolicySettings(allowed_scopes=("settings.*",)),
        ("settings.read (escalating",),
    ),
    (
        "naming an escalating scope in the allow-list does not lift it",
        scopes("credentialVault.read"),
        "team-a",
        PolicySettings(allowed_scopes=("credentialVault.read",)),
        ("credentialVault.read (escalating",),
    ),
    (
        "configured denials extend the built-in list",
        scopes("metrics.read"),
        "team-a",
        PolicySettings(denied_scopes=("metrics.read",)),
        ("metrics.read (escalating",),
    ),
    (
        "configured denials never replace the built-in list",
        scopes("apiTokens.write"),
        "team-a",
        PolicySettings(allowed_scopes=("*",), denied_scopes=("metrics.read",)),
        ("apiTokens.write (escalating",),
    ),
    (
        "an escalating scope lifted by name is granted",
        scopes("InstallerDownload", "metrics.read"),
        "team-a",
        PolicySettings(allowed_escalating_scopes=("InstallerDownload",)),
        None,
    ),
    (
        "lifting one escalating scope lifts no other",
        scopes("InstallerDownload", "apiTokens.write"),
        "team-a",
        PolicySettings(allowed_escalating_scopes=("InstallerDownload",)),
        ("grant apiTokens.write (escalating",),
    ),
    (
        "a lift is for that exact spelling only",
        scopes("installerdownload"),
        "team-a",
        PolicySettings(allowed_scopes=("*",), allowed_escalating_scopes=("InstallerDownload",)),
        ("installerdownload (escalating",),
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
            assert phrase in message, (phrase, message)


@pytest.mark.parametrize("scope", ESCALATING_SCOPES)
@pytest.mark.parametrize(
    "policy",
    [DEFAULT, PolicySettings(allowed_scopes=("*",)), PolicySettings(allowed_scopes=ESCALATING_SCOPES)],
    ids=["shipped", "allow-star", "allow-by-name"],
)
def test_every_escalating_scope_is_refused_by_any_allow_list(scope: str, policy: PolicySettings) -> None:
    message = policy_violation(scopes(scope), namespace="team-a", policy=policy)
    assert message is not None and f"{scope} (escalating" in message


@pytest.mark.parametrize("scope", ESCALATING_SCOPES)
@pytest.mark.parametrize(
    "spelling",
    [str.upper, str.lower, str.swapcase, lambda s: "".join(chr(ord(c) + 0xFEE0) for c in s)],
    ids=["upper", "lower", "swapcase", "fullwidth"],
)
def test_no_spelling_of_an_escalating_scope_slips_past_a_star(scope: str, spelling) -> None:  # type: ignore[no-untyped-def]
    variant = spelling(scope)
    policy = PolicySettings(allowed_scopes=("*",))
    assert scope_denied(variant, policy)
    assert not scope_allowed(variant, policy)


def test_the_shipped_allow_list_is_disjoint_from_the_escalating_scopes() -> None:
    for scope in DEFAULT_ALLOWED_SCOPES:
        assert not scope_denied(scope, DEFAULT), scope
        assert scope_allowed(scope, DEFAULT), scope


def test_every_listed_scope_is_a_scope_dynatrace_knows() -> None:
    """A misspelt entry would deny (or allow) nothing; compare with Dynatrace's own list."""
    settable = set(load_scopes().settable)
    assert set(DEFAULT_ALLOWED_SCOPES) <= settable, set(DEFAULT_ALLOWED_SCOPES) - settable
    assert set(ESCALATING_SCOPES) <= settable, set(ESCALATING_SCOPES) - settable
    assert len(set(ESCALATING_SCOPES)) == len(ESCALATING_SCOPES)


def test_the_command_line_extends_the_deny_list_and_replaces_the_allow_list() -> None:
    shipped = settings_from(run_args()).policy
    assert shipped == PolicySettings()
    assert shipped.allowed_scopes == DEFAULT_ALLOWED_SCOPES
    assert set(ESCALATING_SCOPES) <= set(shipped.all_denied_scopes)

    configured = settings_from(
        run_args(
            "--policy-allowed-scope",
            "metrics.*",
            "--policy-denied-scope",
            "metrics.write",
            "--policy-allow-escalating-scope",
            "InstallerDownload",
        )
    ).policy
    assert configured.allowed_scopes == ("metrics.*",)
    assert set(configured.all_denied_scopes) == {*ESCALATING_SCOPES, "metrics.write"}
    assert configured.allowed_escalating_scopes == ("InstallerDownload",)
    assert policy_violation(scopes("apiTokens.write"), namespace="t", policy=configured) is not None
    assert policy_violation(scopes("InstallerDownload"), namespace="t", policy=configured) is None


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("settings.*", "exact scope name"),
        ("Installer?ownload", "exact scope name"),
        ("metrics.read", "not a denied scope"),
        ("installerdownload", "not a denied scope"),
    ],
)
def test_an_escalation_must_name_one_denied_scope_exactly(value: str, complaint: str) -> None:
    with pytest.raises(SystemExit) as refused:
        settings_from(run_args("--policy-allow-escalating-scope", value))
    assert complaint in str(refused.value)


def test_an_escalation_may_lift_a_configured_denial() -> None:
    args = run_args("--policy-denied-scope", "logs.*", "--policy-allow-escalating-scope", "logs.read")
    policy = settings_from(args).policy
    assert scope_denied("logs.ingest", policy)
    assert not scope_denied("logs.read", policy)


def test_adoption_through_the_default_connection_is_off_unless_a_namespace_is_named() -> None:
    from apitoken_operator.reconcile.policy import adoption_violation

    default = PolicySettings()
    refusal = adoption_violation("team-a", policy=default)
    assert refusal is not None and "--policy-adopt-namespace" in refusal
    trusting = PolicySettings(adoption_namespaces=("platform-*",))
    assert adoption_violation("platform-admin", policy=trusting) is None
    assert adoption_violation("team-a", policy=trusting) is not None


def test_the_default_connection_bounds_grace_periods_and_tokens_per_namespace() -> None:
    from datetime import timedelta

    from apitoken_operator.reconcile.policy import grace_violation, quota_violation

    policy = PolicySettings(max_tokens_per_namespace=2, max_grace_period=3600.0)
    short = Desired(name="web", scopes=frozenset({"metrics.read"}), grace_period=timedelta(hours=1))
    long = Desired(name="web", scopes=frozenset({"metrics.read"}), grace_period=timedelta(hours=2))
    assert grace_violation(short, policy=policy) is None
    refusal = grace_violation(long, policy=policy)
    assert refusal is not None and "gracePeriod" in refusal
    assert quota_violation("team", holding=1, policy=policy) is None
    assert quota_violation("team", holding=2, policy=policy) is not None
    assert quota_violation("team", holding=10_000, policy=PolicySettings()) is None  # no limit by default
