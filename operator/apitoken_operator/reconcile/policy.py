"""The default-connection policy: which namespaces may use the shared credentials, for which scopes.

The default connection is a privileged credential shared by every namespace, and the people who write
ApiTokens are not all trusted. So it grants from an allow-list, never grants an escalating scope
(settings.ESCALATING_SCOPES plus the configured extra denials) unless the administrator named that
exact scope, and creates no personal access tokens unless allowed.

How names are compared, and why:
- allow patterns match case-sensitively, as Dynatrace's scope names are exact enum values: a spelling
  that only resembles an allowed scope is not allowed;
- deny patterns match case-insensitively, after NFKC normalisation, so that no variant of a denied name
  (`SETTINGS.WRITE`, fullwidth letters) can pass should any layer in front of Dynatrace fold it;
- deny wins over every allow pattern (`*` included); only `allowed_escalating_scopes`, exact names,
  lifts a denial, and only for that very spelling.
"""

from __future__ import annotations

import unicodedata
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
    escalating = sorted(s for s in desired.scopes if scope_denied(s, policy))
    not_allowed = sorted(s for s in desired.scopes if not scope_allowed(s, policy) and s not in escalating)
    if escalating or not_allowed:
        parts = []
        if escalating:
            parts.append(
                f"{', '.join(escalating)} (escalating: lets a token holder act beyond this namespace)"
            )
        if not_allowed:
            parts.append(f"{', '.join(not_allowed)} (not in the allowed scopes)")
        return (
            f"the operator's policy does not allow the default connection to grant {'; '.join(parts)}; "
            "ask the operator's administrators, or use a connection Secret of this namespace"
        )
    if desired.personal_access_token and not policy.allow_personal_access_tokens:
        return "the operator's policy does not allow personal access tokens through the default connection"
    return None


def scope_denied(scope: str, policy: PolicySettings) -> bool:
    """True when a deny pattern matches `scope` (any case) and the administrator did not lift it by name."""
    if scope in policy.allowed_escalating_scopes:
        return False
    folded = _fold(scope)
    return any(fnmatchcase(folded, _fold(pattern)) for pattern in policy.all_denied_scopes)


def scope_allowed(scope: str, policy: PolicySettings) -> bool:
    """True when the default connection may grant `scope`: allowed (or lifted by name) and not denied."""
    if scope in policy.allowed_escalating_scopes:
        return True
    return _any(scope, policy.allowed_scopes) and not scope_denied(scope, policy)


def is_denied_name(scope: str, policy: PolicySettings) -> bool:
    """True when a deny pattern matches `scope` exactly as written: what an escalation may name."""
    return _any(scope, policy.all_denied_scopes)


def _fold(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()


def _any(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)


def adoption_violation(namespace: str, *, policy: PolicySettings) -> str | None:
    """Why an object of `namespace` may not adopt a token through the default connection, or None."""
    if any(fnmatchcase(namespace, pattern) for pattern in policy.adoption_namespaces):
        return None
    return (
        f"namespace {namespace!r} may not adopt tokens through the operator's default connection (it can "
        "see every token of the environment); ask the operator's administrators "
        "(--policy-adopt-namespace), or adopt through a connection Secret of this namespace"
    )


def grace_violation(desired: Desired, *, policy: PolicySettings) -> str | None:
    """Why the default connection must not keep rotated-out tokens this long, or None."""
    limit = policy.max_grace_period
    if desired.grace_period.total_seconds() > limit:
        return (
            f"spec.rotation.gracePeriod is longer than the operator's policy allows for the default "
            f"connection ({limit / 3600:g} h): a rotated-out token stays usable that long"
        )
    return None


def quota_violation(namespace: str, *, holding: int, policy: PolicySettings) -> str | None:
    """Why a new token through the default connection would pass the namespace's limit, or None."""
    limit = policy.max_tokens_per_namespace
    if limit is not None and holding >= limit:
        return (
            f"namespace {namespace!r} already has {holding} ApiTokens holding tokens, the limit for a new "
            f"token through the operator's default connection ({limit}); delete one, or use a connection "
            "Secret of this namespace"
        )
    return None
