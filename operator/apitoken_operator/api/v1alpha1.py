"""The ApiToken API, version v1alpha1: the spec users write and the status the operator keeps.

These models are the contract. The CRD (`api/crd.py`) is generated from them: descriptions, defaults,
patterns, lengths and the CEL rules (`x-kubernetes-validations`) live here once, so the API server's
validation and the operator's reading of an object cannot drift apart. Field names are snake_case in
Python and camelCase on the wire (aliases); `validate_by_name` lets code build them with either.

CEL rules are carried for the API server only: pydantic does not evaluate them, so what they reject
(e.g. a name with surrounding whitespace) still reaches the operator from objects stored before a rule
existed; `reconcile.model.Desired.from_spec` checks what it must.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

from apitoken_operator.api.group import KIND, qualified

__all__ = [
    "DNS_SUBDOMAIN_PATTERN",
    "DURATION_PATTERN",
    "ApiToken",
    "ApiTokenSpec",
    "ApiTokenStatus",
    "Condition",
    "ConnectionSecretRef",
    "PendingCreate",
    "RetiringToken",
    "Rotation",
    "SecretSpec",
    "status_patch",
]

#: A duration in one unit: `30s`, `15m`, `36h`, `7d`, `2w`.
DURATION_PATTERN = r"^[0-9]{1,6}(s|m|h|d|w)$"
#: A Kubernetes object name (DNS-1123 subdomain).
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SCOPE_PATTERN = r"^[A-Za-z][A-Za-z0-9._-]*$"
NAME_MAX_LENGTH = 255
SCOPES_MAX_ITEMS = 200
SCOPE_MAX_LENGTH = 128
EXPIRATION_MAX_LENGTH = 64
#: Absolute (ISO 8601 or UTC milliseconds) or relative (`now+30d`, optionally rounded: `now+1d/d`).
EXPIRATION_PATTERN = (
    r"^(now\+[0-9]{1,9}[mhdwMy](/[mhdwMy])?|[0-9]{1,15}|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)$"
)
TOKEN_ID_PATTERN = r"^dt0[a-zA-Z][0-9]{2}\.[A-Z0-9]{24}$"
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
#: Label and annotation keys: an optional DNS subdomain prefix and '/', then a name (as CEL: the schema
#: cannot put a pattern on map keys).
_KEY_RULE = (
    r"self.all(k, size(k) <= 317 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
    r"[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))"
)
_KEY_SYNTAX = (
    "keys must be an optional DNS subdomain prefix and '/', then a name of at most 63 characters "
    "(alphanumerics, '-', '_', '.'), starting and ending alphanumeric"
)


def _validations(*rules: tuple[str, str]) -> dict[str, Any]:
    """CEL rules (rule, message) as the CRD's `x-kubernetes-validations`."""
    return {"x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in rules]}


class _Model(BaseModel):
    """camelCase on the wire; unknown fields ignored (the API server prunes them from stored objects)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
    )


# --- spec -----------------------------------------------------------------------------------------------

Scope = Annotated[str, StringConstraints(min_length=1, max_length=SCOPE_MAX_LENGTH, pattern=SCOPE_PATTERN)]
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN)]
Expiration = Annotated[str, StringConstraints(max_length=EXPIRATION_MAX_LENGTH, pattern=EXPIRATION_PATTERN)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE_PATTERN)]


def _no_duplicates(scopes: list[str]) -> list[str]:
    """The list is a set (`x-kubernetes-list-type: set`): the API server refuses duplicates too."""
    if len(set(scopes)) != len(scopes):
        raise ValueError("must not contain duplicates")
    return scopes


class Rotation(_Model):
    """When and how a token is replaced by a new one."""

    renew_before: Duration | None = Field(
        None,
        description="How long before expiry to renew, e.g. 7d or 36h. Unset means renew only on request.",
    )
    grace_period: Duration = Field(
        "1h",
        description="How long the old token keeps working after the Secret switched (default 1h; it must "
        "outlast how often consumers re-read the Secret: the Dynatrace Operator refreshes every 15 minutes).",
    )


#: a shared Secret's key names its writer's annotation (`writer.<key>`), whose name part holds 63 characters
SHARED_KEY_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,54}[A-Za-z0-9])?$"
#: the label by which a Secret the operator did not create lets ApiTokens write keys into it
SHARED_LABEL = qualified("shared")


class SecretSpec(_Model):
    """Where the token's secret goes."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            (
                "!has(self.mode) || self.mode != 'Shared' || !has(self.key) || "
                f"self.key.matches('{SHARED_KEY_PATTERN}')",
                "with mode Shared, key must be 1 to 56 letters, digits, '-', '_' or '.', starting and ending "
                "with a letter or digit (it names the key's writer annotation)",
            )
        )
    )

    name: Annotated[str, StringConstraints(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] | None = Field(
        None, description="The Secret's name. Defaults to the ApiToken's name. A change moves the Secret."
    )
    key: Annotated[str, StringConstraints(max_length=253, pattern=SECRET_KEY_PATTERN)] = Field(
        "token",
        description="The data key holding the secret (default token; use apiToken to feed a DynaKube of the "
        "Dynatrace Operator).",
    )
    mode: Literal["Owned", "Shared"] = Field(
        "Owned",
        description="Owned (default): the Secret is this ApiToken's alone: created and owned by it, deleted "
        "with it, and an existing Secret of that name is never taken over. Shared: several ApiTokens each "
        "write their own key into one Secret, e.g. a DynaKube's apiToken and dataIngestToken: each key "
        "records its writer (annotation dynatrace.apitokens.io/writer.<key>), a key another ApiToken writes "
        "is refused, and deleting an ApiToken removes only its key. A Secret the operator did not create is "
        f'joined only when it carries the label {SHARED_LABEL}: "true"; one it created goes with the last '
        "ApiToken writing into it. Cannot change once set.",
        json_schema_extra=_validations(("self == oldSelf", "spec.secret.mode cannot change once set")),
    )
    labels: dict[str, LabelValue] | None = Field(
        None,
        max_length=64,
        description="Labels put on the Secret (the ApiToken's own labels are never copied). Keys and values "
        "follow the Kubernetes label syntax, checked here so that a bad one is refused up front rather than "
        "when the Secret is written.",
        json_schema_extra=_validations((_KEY_RULE, f"label {_KEY_SYNTAX}")),
    )
    annotations: dict[str, str] | None = Field(
        None,
        max_length=64,
        description="Annotations put on the Secret; keys follow the Kubernetes annotation key syntax.",
        json_schema_extra=_validations((_KEY_RULE, f"annotation {_KEY_SYNTAX}")),
    )


class ConnectionSecretRef(_Model):
    """The Secret holding the URL and token this object's Dynatrace is reached with."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] = (
        Field(description="The connection Secret's name.")
    )


class ApiTokenSpec(_Model):
    """The desired token. `Desired.from_spec` turns it into what the plan works with."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX_LENGTH)] = Field(
        description="The token's name in Dynatrace. Names are not unique in Dynatrace; the operator tracks "
        "the token by its id (status.id). A change renames the token in place.",
        json_schema_extra=_validations(
            ("self.trim() == self", "name must not start or end with whitespace"),
            (
                r"!self.matches('[\\x00-\\x1f\\x7f]')",
                "name must not contain control characters (newlines, tabs, NUL, ...)",
            ),
            (
                r"!self.matches('[\\p{Cf}\\p{Zl}\\p{Zp}]')",
                "name must not contain invisible format characters (Unicode category Cf: bidirectional "
                "overrides and isolates such as U+202E, zero-width characters, soft hyphens) or line and "
                "paragraph separators: they make a name read differently from what it is",
            ),
        ),
    )
    scopes: Annotated[list[Scope], AfterValidator(_no_duplicates)] = Field(
        min_length=1,
        max_length=SCOPES_MAX_ITEMS,
        description="The token's scopes, e.g. metrics.read or entities.read. A set: at least one, no "
        "duplicates. Unknown scope names are passed to Dynatrace, which judges them. A change updates the "
        "token in place (the whole list is replaced).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    enabled: bool = Field(
        False,
        description="Whether the token can be used. Defaults to false, as in Terraform. A disabled token is "
        "revoked in Dynatrace (it fails authentication) but kept.",
    )
    personal_access_token: bool = Field(
        False,
        description="Create a personal access token instead of an API token. Cannot change in Dynatrace "
        "after creation: changing it here replaces the token (new token, Secret updated, old one deleted).",
    )
    expiration_date: Expiration | None = Field(
        None,
        description="When the token expires: an absolute date (ISO 8601, e.g. "
        "2027-01-25T05:57:01.123+01:00, or UTC milliseconds) or a relative one (now+30d; units m h d w M "
        "y). Unset means never. Cannot change in Dynatrace after creation: changing it here replaces the "
        "token. A relative value is resolved when the token is created; status.expirationDate shows the "
        "absolute date.",
    )
    adopt_token_id: Annotated[str, StringConstraints(max_length=64, pattern=TOKEN_ID_PATTERN)] | None = Field(
        None,
        description="Manage an existing token (made before the operator, e.g. by Terraform or by hand) "
        "instead of creating one: its name, scopes and enabled are put in line with this spec. Its secret "
        "cannot be read back from Dynatrace, so the Secret stays empty and the status says so until the "
        "token is "
        f"rotated (annotate {qualified('rotate')}=<any new value>).",
    )
    rotation: Rotation | None = Field(
        None,
        description="Renew the token before it expires and on request. A renewal creates a new token, "
        "switches the Secret to it, and deletes the old token after the grace period, so consumers that read "
        "the Secret periodically never hold a dead token. Renewal before expiry needs a relative "
        "expirationDate (now+30d), which each new token gets afresh.",
    )
    deletion_policy: Literal["Delete", "Orphan"] = Field(
        "Delete",
        description="What happens to the Dynatrace token when this ApiToken is deleted: Delete (default) "
        "deletes it; Orphan leaves it in Dynatrace.",
    )
    secret: SecretSpec | None = Field(
        None, description="The Kubernetes Secret that receives the token's secret, in this namespace."
    )
    connection_secret_ref: ConnectionSecretRef | None = Field(
        None,
        description="A Secret in this namespace with keys apiUrl and apiToken (a token with apiTokens.read "
        "and apiTokens.write) used to reach Dynatrace. Without it the operator's default connection applies, "
        "within the operator's policy. Cross-namespace references are not allowed.",
    )


# --- status ---------------------------------------------------------------------------------------------


class _Record(_Model):
    """Status parts: a number where a string belongs reads as that string, as the hand-written reader did."""

    model_config = ConfigDict(coerce_numbers_to_str=True)


class RetiringToken(_Record):
    """A token replaced by a rotation; `delete_after` is UTC ISO 8601, parsed by the reader."""

    model_config = ConfigDict(json_schema_extra={"description": "A retiring token."})

    id: str | None = Field(None, description="The token id.")
    delete_after: str | None = Field(None, description="When it is deleted (UTC ISO 8601).")


class PendingCreate(_Record):
    """The intent recorded before a create call (the wire form of `reconcile.model.PendingCreate`)."""

    attempt: str | None = Field(None, description="A random id of this create attempt.")
    name: str | None = Field(
        None,
        description="The token name sent with the create call: the declared name marked with the attempt, so "
        "that what the call made can be told apart from every other token.",
    )
    started_at: str | None = Field(None, description="When the attempt started (UTC ISO 8601).")
    owner: str | None = Field(
        None, description="The owner Dynatrace gives tokens made through the connection."
    )
    replaces: str | None = Field(None, description="The id of the token this create replaces, if any.")
    grace_seconds: int | None = Field(
        None,
        description="Seconds the replaced token keeps working after the switch (rotation), 0 to delete at "
        "once.",
    )
    writer: str | None = Field(
        None,
        description="The operator process that recorded it. With peering, another replica waits for this "
        "create while that process is alive (at most the create's deadline), then settles it.",
    )


class Condition(_Record):
    """A kstatus condition (Ready, Reconciling, Stalled)."""

    model_config = ConfigDict(json_schema_extra={"description": "One condition."})

    type: str = Field(description="Ready, Reconciling or Stalled.")
    status: Literal["True", "False", "Unknown"] = Field(description="The condition's state.")
    reason: str | None = Field(None, description="A CamelCase reason, also used for Events and metrics.")
    message: str | None = Field(None, description="What happened, for people.")
    last_transition_time: str | None = Field(
        None, description="When status last changed.", json_schema_extra={"format": "date-time"}
    )
    observed_generation: int | None = Field(
        None, description="The generation it describes.", json_schema_extra={"format": "int64"}
    )


class ApiTokenStatus(_Record):
    """What the operator observed and recorded. Never holds the token's secret.

    Read back with `read` (lenient: a field that does not parse reads as unset, as the hand-written
    reader did); written as a merge patch with `status_patch`.
    """

    observed_generation: int = Field(
        0, description="The spec generation the status describes.", json_schema_extra={"format": "int64"}
    )
    id: str | None = Field(None, description="The token's id (dt0c01.<public part>), safe to show.")
    owner: str | None = Field(None, description="The token's owner in Dynatrace.")
    creation_date: str | None = Field(None, description="When the token was created (UTC ISO 8601).")
    modified_date: str | None = Field(None, description="When the token's name or scopes last changed.")
    last_used_date: str | None = Field(None, description="When the token was last used.")
    last_used_ip_address: str | None = Field(None, description="The address it was last used from.")
    expiration_date: str | None = Field(None, description="When the token expires; absent if never.")
    secret_name: str | None = Field(None, description="The Secret holding the token's secret.")
    secret_available: bool | None = Field(
        None,
        description="False for an adopted token whose secret could not be read back; rotate to fill the "
        "Secret.",
    )
    next_renewal: str | None = Field(
        None, description="When the token will be renewed (expiry minus spec.rotation.renewBefore)."
    )
    last_rotation_request: str | None = Field(
        None, description=f"The value of the {qualified('rotate')} annotation last acted on."
    )
    retiring_tokens: list[RetiringToken] | None = Field(
        None, description="Tokens replaced by a rotation, kept working until their grace period ends."
    )
    requested_expiration_date: str | None = Field(
        None,
        description="The spec.expirationDate the current token was created from (relative values resolve "
        "once).",
    )
    pending_create: PendingCreate | None = Field(
        None,
        description="Recorded before a create call so that a token whose create response was lost (crash, "
        "dropped connection) is found and deleted before another is made.",
    )
    conditions: list[Condition] | None = Field(
        None,
        description="Ready, Reconciling and Stalled (kstatus conventions).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )

    @classmethod
    def read(cls, raw: Any) -> Self:
        """The status as stored, never failing: whatever does not parse is dropped and reads as unset.

        A status is the operator's own record, but it may come from an older operator or a hand edit;
        one unreadable entry must not hide the rest (a retiring token with a bad date is still retired).
        """
        try:
            return cls.model_validate(raw if isinstance(raw, dict) else {})
        except ValidationError:
            data = copy.deepcopy(raw)  # repaired below: the caller's body stays as stored
        for _ in range(_MAX_REPAIRS):
            try:
                return cls.model_validate(data)
            except ValidationError as error:
                # last first: removing an entry of a list shifts the entries after it
                for problem in reversed(error.errors()):
                    _drop(data, problem["loc"])
        return cls()


#: how many rounds of dropping unreadable parts `ApiTokenStatus.read` tries before giving up on all
_MAX_REPAIRS = 8


def _drop(data: dict[str, Any], loc: tuple[int | str, ...]) -> None:
    """Remove the value at `loc`; a missing required field takes its whole entry with it."""
    parent: Any = data
    for step in loc[:-1]:
        try:
            child = parent[step]
        except (KeyError, IndexError, TypeError):
            return
        if not isinstance(child, dict | list):  # e.g. a string where an entry belongs: drop it whole
            break
        parent = child
    else:
        last = loc[-1]
        if isinstance(parent, dict) and last in parent:
            del parent[last]
            return
        if isinstance(parent, list) and isinstance(last, int) and last < len(parent):
            del parent[last]
            return
    # the value is missing (a required field) or its container is not one: drop the enclosing entry
    if len(loc) >= 2:
        _drop(data, loc[:-1])


# --- the object -----------------------------------------------------------------------------------------


def _untyped_object(schema: dict[str, Any]) -> None:
    """metadata is validated by the API server itself: the CRD states only that it is an object."""
    schema.pop("additionalProperties", None)


class ApiToken(_Model):
    """The whole object, as the CRD's openAPIV3Schema describes it."""

    model_config = ConfigDict(
        json_schema_extra={
            "description": "ApiToken declares a Dynatrace API token. The operator creates it through the "
            "Dynatrace Tokens API v2, stores its secret in a Kubernetes Secret (and nowhere else), keeps the "
            "token in line with this declaration, and revokes it when the ApiToken is deleted (see "
            "spec.deletionPolicy)."
        }
    )

    api_version: str | None = Field(None, description="APIVersion of this object.")
    kind: str | None = Field(None, description=f"Kind of this object ({KIND}).")
    metadata: dict[str, Any] | None = Field(None, json_schema_extra=_untyped_object)
    spec: ApiTokenSpec = Field(
        description="The desired token. Mirrors the Terraform resource dynatrace_api_token."
    )
    # Defaulted so that a new object reads observedGeneration 0 < generation: GitOps tools (kstatus) then
    # see it in progress until the operator's first status write, not "current".
    status: ApiTokenStatus | None = Field(
        None,
        description="What the operator observed. Never holds the token's secret.",
        json_schema_extra={"default": {}},
    )


def status_patch(status: ApiTokenStatus) -> dict[str, Any]:
    """The merge patch (camelCase) that writes what `status` sets: fields never set are left out,
    fields set to None are sent as null, which removes them (RFC 7386).

    Build the model with only what changes, e.g. `ApiTokenStatus(id=new_id, pending_create=None)`.
    """
    return status.model_dump(mode="json", by_alias=True, exclude_unset=True)
