"""The default-connection policy: which namespaces may use the shared credentials, for which scopes."""

from __future__ import annotations

from fnmatch import fnmatchcase

from apitoken_operator.reconcile.model import Desired
from apitoken_operator.settings import PolicySettings


def policy_violation(desired: Desired, *, namespace: str, policy: PolicySettings) -> str | None:
    """Why the default connection must not serve this ApiToken, or None when it may."""
    if policy.allowed_namespaces and not _any(namespace, policy.allowed_namespaces):
        return (
            f"namespace {namespace!r} may not use the operator's default connection; "
            "set spec.connectionSecretRef to a connection Secret in this namespace"
        )
    denied = sorted(s for s in desired.scopes if _any(s, policy.denied_scopes))
    if policy.allowed_scopes:
        denied += sorted(s for s in desired.scopes if not _any(s, policy.allowed_scopes) and s not in denied)
    if denied:
        return (
            f"the operator's policy does not allow the default connection to grant {', '.join(denied)}; "
            "ask the operator's administrators, or use a connection Secret of this namespace"
        )
    if desired.personal_access_token and not policy.allow_personal_access_tokens:
        return "the operator's policy does not allow personal access tokens through the default connection"
    return None


def _any(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)
