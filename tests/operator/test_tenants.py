"""A hostile namespace against the real API server, the operator process and the emulator (issue #14).

The people who create ApiTokens may be attackers; the default connection is a privileged credential.
Under the operator's shipped policy, a namespace's ApiTokens that ask the default connection for
escalating scopes, name a Secret that did not opt in as a connection, or point a connection at an internal
address are each refused with a condition and a Warning Event, and nothing is created in Dynatrace.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.operator import CONNECTION, CONNECTION_LABEL, OperatorEnv, settle

pytestmark = pytest.mark.controlplane

#: Escalating scopes the issue found minted through the default connection, and the classic ones.
ESCALATING = [
    "apiTokens.write",
    "apiTokens.read",
    "TenantTokenManagement",
    "tenantTokenRotation.write",
    "settings.write",
    "credentialVault.read",
    "InstallerDownload",
]


def _secret(env: OperatorEnv, name: str, data: dict[str, str], *, labelled: bool) -> None:
    labels = {CONNECTION_LABEL: "true"} if labelled else {}
    env.core.create_namespaced_secret(
        env.namespace, {"metadata": {"name": name, "labels": labels}, "stringData": data}
    )


def test_a_hostile_namespace_is_refused_and_nothing_is_minted(operator_env: OperatorEnv) -> None:
    env = operator_env
    url, admin = env.emulator.base_url, env.emulator.admin_token.reveal()
    port = url.rsplit(":", 1)[1]
    # The default connection's own credentials, copied into a Secret that never opted in.
    _secret(env, "copied-credentials", {"apiUrl": url, "apiToken": admin}, labelled=False)
    # Internal addresses (the fixture allows 127.0.0.0/8 for the emulator, nothing else).
    _secret(env, "to-metadata", {"apiUrl": "http://169.254.169.254", "apiToken": admin}, labelled=True)
    _secret(env, "to-pod-network", {"apiUrl": f"http://10.0.0.1:{port}", "apiToken": admin}, labelled=True)
    _secret(env, "to-ipv6-loopback", {"apiUrl": f"http://[::1]:{port}", "apiToken": admin}, labelled=True)
    env.start(any_scope=False)  # the shipped allow-list

    refused: dict[str, tuple[dict[str, Any], str, str]] = {
        **{
            f"escalate-{scope.lower().replace('.', '-')}": (
                {"scopes": ["metrics.read", scope]},
                "PolicyDenied",
                f"{scope} (escalating",
            )
            for scope in ESCALATING
        },
        "escalate-case-trick": (
            {"scopes": ["APITOKENS.WRITE"]},
            "PolicyDenied",
            "APITOKENS.WRITE (escalating",
        ),
        "not-allowed": ({"scopes": ["logs.read"]}, "PolicyDenied", "logs.read (not in the allowed scopes)"),
        "personal": (
            {"scopes": ["metrics.read"], "personalAccessToken": True},
            "PolicyDenied",
            "personal access tokens",
        ),
        "unlabelled": (
            {"scopes": ["metrics.read"], "connectionSecretRef": {"name": "copied-credentials"}},
            "ConnectionInvalid",
            f"{CONNECTION_LABEL}=true",
        ),
        "metadata": (
            {"scopes": ["metrics.read"], "connectionSecretRef": {"name": "to-metadata"}},
            "ConnectionNotAllowed",
            "169.254.169.254 is an internal address (link-local)",
        ),
        "pod-network": (
            {"scopes": ["metrics.read"], "connectionSecretRef": {"name": "to-pod-network"}},
            "ConnectionNotAllowed",
            "10.0.0.1 is an internal address (private)",
        ),
        "ipv6-loopback": (
            {"scopes": ["metrics.read"], "connectionSecretRef": {"name": "to-ipv6-loopback"}},
            "ConnectionNotAllowed",
            "::1 is an internal address (loopback)",
        ),
    }
    for name, (spec, _, _) in refused.items():
        env.apply(name, {"name": name, **spec})
    # What the shipped policy does allow, through the default connection, still works ...
    env.apply("allowed", {"name": "allowed", "scopes": ["metrics.ingest", "entities.read"]})
    # ... and the namespace's own labelled connection (the default's Secret, named explicitly) is not
    # held to the default's policy, even though the default connection resolved the same credentials.
    env.apply(
        "own-connection",
        {"name": "own", "scopes": ["logs.read"], "connectionSecretRef": {"name": CONNECTION}},
    )

    made = {name: env.wait_ready(name, timeout=60)["status"]["id"] for name in ("allowed", "own-connection")}
    for name, (_, reason, mentions) in refused.items():
        ready = env.wait_condition(name, "Ready", "False", reason, timeout=60)
        assert mentions in ready["message"], (name, ready["message"])
        env.wait_condition(name, "Stalled", "True", reason)
        assert "id" not in (env.get(name) or {}).get("status", {}), name
    settle(1.0)
    for name, (_, reason, _) in refused.items():
        events = env.events(name)
        assert any(e.type == "Warning" and e.reason == reason for e in events), (name, events)

    # Nothing minted but the two allowed tokens; no call reached an internal address.
    assert {t.id for t in env.live_tokens()} == set(made.values())
    assert env.calls("create") == 2
    assert "Traceback" not in env.log_text()
