"""The reconcile input: what the user declared, what was recorded, and what was observed.

Built by `controller.gather` from the ApiToken, its Secret and Dynatrace; consumed by `plan`.
Observed values never include a token's secret: the Secret is described by facts about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from apitoken_operator.api.v1alpha1 import ApiTokenSpec, Rotation, SecretSpec
from apitoken_operator.dynatrace.dates import DateFormatError, is_relative, parse_date
from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.reconcile import creation
from apitoken_operator.settings import PolicySettings


class SpecError(ValueError):
    """The spec cannot be acted on (what the CRD schema could not reject up front)."""


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: the instant a relative expirationDate is measured from when the spec is checked: a short month first,
#: so months and years are read at their shortest
_LIFETIME_REFERENCE = datetime(2001, 2, 1, tzinfo=UTC)
#: top-level spec fields and the fields of these objects read as unset when null or "" (not the
#: contents of labels and annotations, where an empty value is a value)
_OBJECTS = ("secret", "rotation", "connectionSecretRef")


def parse_duration(text: str) -> timedelta:
    """A duration the spec model validated (`v1alpha1.DURATION_PATTERN`: digits and one unit)."""
    return timedelta(**{_UNITS[text[-1]]: int(text[:-1])})


#: the CRD's default for spec.rotation.gracePeriod (1h), for a spec without a rotation
DEFAULT_GRACE_PERIOD = parse_duration(Rotation.model_fields["grace_period"].default)


def format_duration(duration: timedelta) -> str:
    """`duration` in the largest unit that states it exactly, the way the spec writes one (e.g. 7d)."""
    seconds = int(duration.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def renewal_problem(
    renew_before: timedelta, expiration: str | None, *, now: datetime, written: str | None = None
) -> str | None:
    """The rule "renewBefore must be shorter than the token's lifetime", defined once.

    Checked on the spec (`Desired.from_spec`, lifetime read at its shortest) and by the plan when a
    token would be made (`now`: a rounded expiry such as now+1d/d is shorter late in the day). It cannot
    be a CEL rule: the lifetime of `now+1M` or `now+1d/d` depends on the calendar and the time of day.
    Returns the message when the rule is broken; `written` is the spec's own spelling of renewBefore.
    """
    if not expiration or not is_relative(expiration):
        return None  # an absolute expiry renews into the same date: nothing is due over and over
    try:
        lifetime = parse_date(expiration, now=now) - now
    except (DateFormatError, OverflowError):
        return None  # not a date the plan can act on: Dynatrace's answer to the create says so
    if renew_before < lifetime:
        return None
    return (
        f"spec.rotation.renewBefore ({written or format_duration(renew_before)}) must be shorter than the "
        f"token's lifetime ({expiration}), or every new token would be due for renewal at once"
    )


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
    #: spec.secret.mode Shared: the Secret holds other ApiTokens' keys too; this one writes only its key
    secret_shared: bool = False
    connection_secret: str | None = None
    adopt_token_id: str | None = None
    renew_before: timedelta | None = None
    grace_period: timedelta = DEFAULT_GRACE_PERIOD

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, object_name: str) -> Desired:
        """Validate the spec with the API's model (`ApiTokenSpec`) and apply the defaults.

        The CRD rejects almost everything up front; what reaches this point is an object stored before a
        rule existed, or what the schema cannot express. An empty value (null, "") reads as unset.
        """
        try:
            model = ApiTokenSpec.model_validate(_present(spec))
        except ValidationError as error:
            raise SpecError(_spec_message(error)) from None
        if not model.name.strip():  # the CEL rule self.trim() == self, which pydantic does not run
            raise SpecError("spec.name must be a non-empty string")
        if creation.is_marked(model.name):
            raise SpecError(
                "spec.name must not end with ' [creating <32 hex digits>]': the operator marks tokens it is "
                "creating that way"
            )
        rotation = model.rotation or Rotation()
        renew = parse_duration(rotation.renew_before) if rotation.renew_before else None
        if renew is not None:
            problem = renewal_problem(
                renew, model.expiration_date, now=_LIFETIME_REFERENCE, written=rotation.renew_before
            )
            if problem:
                raise SpecError(problem)
        secret = model.secret or SecretSpec()
        return cls(
            name=model.name,
            scopes=frozenset(model.scopes),
            enabled=model.enabled,
            personal_access_token=model.personal_access_token,
            expiration_date=model.expiration_date,
            deletion_policy=model.deletion_policy,
            secret_name=secret.name or object_name,
            secret_key=secret.key,
            secret_labels=dict(secret.labels or {}),
            secret_annotations=dict(secret.annotations or {}),
            secret_shared=secret.mode == "Shared",
            connection_secret=model.connection_secret_ref.name if model.connection_secret_ref else None,
            adopt_token_id=model.adopt_token_id,
            renew_before=renew,
            grace_period=parse_duration(rotation.grace_period),
        )


def _present(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec without null or empty values, which read as unset (and so take their defaults).

    Kept from the hand-written reader: `connectionSecretRef: {name: ""}` means the default connection.
    """
    result = {}
    for key, value in spec.items():
        kept = value
        if key in _OBJECTS and isinstance(value, Mapping):  # an object left empty reads as unset too
            kept = {k: v for k, v in value.items() if v is not None and v != ""} or None
        if kept is not None and kept != "":
            result[key] = kept
    return result


#: messages that say more than pydantic's for the fields people get wrong most
_SCOPES_SHAPE = frozenset({"missing", "list_type", "too_short", "string_type", "string_too_short"})


def _spec_message(error: ValidationError) -> str:
    """The first problem as a message naming the field (`spec.<path>`), never echoing a value unasked."""
    problem = error.errors()[0]
    loc, kind = problem["loc"], problem["type"]
    path = "spec" + "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in loc)
    if loc[:1] == ("scopes",) and kind in _SCOPES_SHAPE:
        return "spec.scopes must be a non-empty list of scope names"
    if loc == ("scopes",) and kind == "value_error":
        return "spec.scopes must not contain duplicates"
    if loc == ("name",) and kind in ("missing", "string_type", "string_too_short"):
        return "spec.name must be a non-empty string"
    if loc == ("deletionPolicy",):
        return f"spec.deletionPolicy must be Delete or Orphan, not {problem['input']!r}"
    if loc in (("rotation", "renewBefore"), ("rotation", "gracePeriod")):
        return f"{path} must be a number and a unit (s, m, h, d, w), e.g. 7d, not {problem['input']!r}"
    message = problem["msg"]
    return f"{path}: {message[:1].lower()}{message[1:]}"


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
    #: data key -> id of the well-formed token stored under it (any key, for moves between keys; in a
    #: shared Secret only the keys this ApiToken writes)
    token_ids: Mapping[str, str] = field(default_factory=dict)
    #: a shared Secret (spec.secret.mode Shared): `owned` means this ApiToken writes a key in it
    shared: bool = False
    #: it carries the label that lets ApiTokens write keys into it (set by the operator on one it made)
    joinable: bool = False
    #: who else writes the desired key (`namespace/name`, or "somebody" for data no writer recorded)
    key_writer: str | None = None
    #: the keys this ApiToken writes (shared Secrets)
    written_keys: frozenset[str] = frozenset()


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
    #: the ApiToken's uid (a shared Secret records each key's writer by it)
    uid: str = ""

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
