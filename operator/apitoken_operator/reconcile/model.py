"""The reconcile input: what the user declared, what was recorded, and what was observed.

Built by `kube.gather` from the ApiToken, its Secret and Dynatrace; consumed by `plan`.
Observed values never include a token's secret: the Secret is described by facts about it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apitoken_operator.dynatrace.dates import DateFormatError, parse_date
from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.reconcile import creation
from apitoken_operator.settings import PolicySettings


class SpecError(ValueError):
    """The spec cannot be acted on (what the CRD schema could not reject up front)."""


DEFAULT_GRACE_PERIOD = timedelta(hours=1)
_DURATION = re.compile(r"^(\d{1,6})(s|m|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str, *, field: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if match is None:
        raise SpecError(f"{field} must be a number and a unit (s, m, h, d, w), e.g. 7d, not {text!r}")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


@dataclass(frozen=True)
class Desired:
    """The ApiToken's spec, with defaults applied."""

    name: str
    scopes: frozenset[str]
    enabled: bool = False
    personal_access_token: bool = False
    expiration_date: str | None = None
    deletion_policy: str = "Delete"
    secret_name: str = ""
    secret_key: str = "token"
    secret_labels: Mapping[str, str] = field(default_factory=dict)
    secret_annotations: Mapping[str, str] = field(default_factory=dict)
    connection_secret: str | None = None
    adopt_token_id: str | None = None
    renew_before: timedelta | None = None
    grace_period: timedelta = DEFAULT_GRACE_PERIOD

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, object_name: str) -> Desired:
        scopes = spec.get("scopes") or []
        if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) and s for s in scopes):
            raise SpecError("spec.scopes must be a non-empty list of scope names")
        if len(set(scopes)) != len(scopes):
            raise SpecError("spec.scopes must not contain duplicates")
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SpecError("spec.name must be a non-empty string")
        if creation.is_marked(name):
            raise SpecError(
                "spec.name must not end with ' [creating <32 hex digits>]': the operator marks tokens it is "
                "creating that way"
            )
        secret = spec.get("secret") or {}
        rotation = spec.get("rotation") or {}
        renew_before = rotation.get("renewBefore")
        grace = rotation.get("gracePeriod")
        connection = spec.get("connectionSecretRef") or {}
        policy = spec.get("deletionPolicy") or "Delete"
        if policy not in ("Delete", "Orphan"):
            raise SpecError(f"spec.deletionPolicy must be Delete or Orphan, not {policy!r}")
        expiration = spec.get("expirationDate") or None
        renew = parse_duration(renew_before, field="spec.rotation.renewBefore") if renew_before else None
        if renew is not None and expiration and expiration.strip().startswith("now"):
            lifetime = _relative_lifetime(expiration)
            if lifetime is not None and renew >= lifetime:
                raise SpecError(
                    f"spec.rotation.renewBefore ({renew_before}) must be shorter than the token's lifetime "
                    f"({expiration}), or every new token would be due for renewal at once"
                )
        return cls(
            name=name,
            scopes=frozenset(scopes),
            enabled=bool(spec.get("enabled", False)),
            personal_access_token=bool(spec.get("personalAccessToken", False)),
            expiration_date=spec.get("expirationDate") or None,
            deletion_policy=policy,
            secret_name=secret.get("name") or object_name,
            secret_key=secret.get("key") or "token",
            secret_labels=dict(secret.get("labels") or {}),
            secret_annotations=dict(secret.get("annotations") or {}),
            connection_secret=connection.get("name") or None,
            adopt_token_id=spec.get("adoptTokenId") or None,
            renew_before=renew,
            grace_period=parse_duration(grace, field="spec.rotation.gracePeriod")
            if grace
            else DEFAULT_GRACE_PERIOD,
        )


def _relative_lifetime(expiration: str) -> timedelta | None:
    """How long a token made now with a relative expirationDate lives (months and years taken short)."""
    reference = datetime(2001, 2, 1, tzinfo=UTC)  # a short month first: the shortest reading
    try:
        return parse_date(expiration, now=reference) - reference
    except DateFormatError:
        return None


@dataclass(frozen=True)
class PendingCreate:
    """A create that was started: recorded before the call, so a lost answer can be cleaned up."""

    attempt: str
    name: str
    started_at: datetime
    owner: str | None = None
    replaces: str | None = None
    #: seconds the replaced token keeps working (a rotation's grace period); 0 deletes it at once
    grace_seconds: int = 0
    #: recorded by this process, whose create is therefore over (a reconcile holds the object's lock)
    started_here: bool = False
    #: the operator process that recorded it (kopf's peering identity)
    writer: str | None = None
    #: that process is gone (left the peering object, or an earlier run of this one): its create is over
    writer_gone: bool = False

    @property
    def marked(self) -> bool:
        """The create sent a name unique to its attempt, so a token with that name is its own."""
        return creation.attempt_of(self.name) == self.attempt


def running_elsewhere_until(
    pending: PendingCreate | None, *, window: timedelta | None, now: datetime
) -> datetime | None:
    """Until when another replica may still be making the token `pending` records (None: not at all).

    `window` is None when no other replica can be running (standalone): a create recorded by another
    process is then a dead predecessor's, over and ready to be settled.
    """
    if pending is None or window is None or pending.started_here or pending.writer_gone:
        return None
    until = pending.started_at + window
    return until if now < until else None


@dataclass(frozen=True)
class Recorded:
    """What the operator wrote into the status earlier."""

    token_id: str | None = None
    secret_name: str | None = None
    pending: PendingCreate | None = None
    expiration_requested: str | None = None
    #: False for an adopted token whose secret could not be read back
    secret_available: bool = True
    last_rotation_request: str | None = None
    #: tokens replaced by a rotation: (id, delete after)
    retiring: tuple[tuple[str, datetime], ...] = ()


@dataclass(frozen=True)
class SecretFacts:
    """Facts about a Secret, never its value."""

    name: str
    exists: bool = False
    #: owned by this ApiToken (controller ownerReference with its uid)
    owned: bool = False
    #: the id part of the stored value, if a well-formed token is stored under the desired key
    value_token_id: str | None = None
    #: the token id the operator annotated the Secret with
    annotated_token_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    keys: frozenset[str] = frozenset()
    #: data key -> id of the well-formed token stored under it (any key, for moves between keys)
    token_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ObservedToken:
    """A token as Dynatrace reports it (`None` in `Input.token` means: not found)."""

    token: ApiToken

    @property
    def id(self) -> str:
        return self.token.id or ""


@dataclass(frozen=True)
class Input:
    desired: Desired
    recorded: Recorded
    secret: SecretFacts
    now: datetime
    #: the token named by `recorded.token_id` as observed; None when Dynatrace says it does not exist
    token: ApiToken | None = None
    #: the Secret named in `recorded.secret_name`, when it differs from the desired name
    previous_secret: SecretFacts | None = None
    #: tokens left over from `recorded.pending`: those with the marked name its intent recorded
    lost_create_candidates: tuple[ApiToken, ...] = ()
    #: a lookup proved the Secret's value to be the live secret of `secret.value_token_id` (looked up
    #: only where the plan would take that id from the Secret: a lost status or a pending create)
    secret_proven: bool = False
    deleting: bool = False
    #: `namespace/name` of the ApiToken, written on the Secret so people can trace it back
    reference: str = ""

    @property
    def namespace(self) -> str:
        return self.reference.partition("/")[0]

    @property
    def object_name(self) -> str:
        return self.reference.partition("/")[2]

    #: an administrator asked to let the object go without touching Dynatrace (the release annotation)
    release_requested: bool = False
    #: the value of the rotate annotation; a value not yet acted on asks for a rotation
    rotation_request: str | None = None
    #: how long a create recorded by another replica may still run (None: standalone, no other replica)
    foreign_create_window: timedelta | None = None
    #: the tokens the operator's connections authenticate with: never adopted, changed or deleted
    credential_token_ids: frozenset[str] = frozenset()
    #: spec.adoptTokenId is recorded (or retiring) in another ApiToken: it is that object's, not this one's
    adopt_claimed: bool = False
    #: the operator's policy, when the object uses the default connection (its own connection is not limited)
    default_policy: PolicySettings | None = None
    #: ApiTokens of the object's namespace holding a token (counted only where a namespace limit applies)
    namespace_holding: int = 0
    #: the object's connection cannot be used (while deleting): why; Dynatrace was not read
    connection_problem: str | None = None
    #: rotated-out tokens the object may keep at once; a rotation due while that many retire waits
    max_retiring: int | None = None
