"""Pydantic models for every schema of the Tokens API v2 (`apitokens-openapi.json`).

Fields are snake_case in Python and camelCase on the wire. Unknown response fields are kept
(`extra="allow"`) and scopes are plain strings, because Dynatrace adds both without an API version
change. The created token's secret is a `TokenSecret`, so no repr or dump of a model shows it.

No I/O here; the emulator imports this module too.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from apitoken_operator.dynatrace.secrets import TokenSecret

__all__ = [
    "ApiToken",
    "ApiTokenCreate",
    "ApiTokenCreated",
    "ApiTokenList",
    "ApiTokenSecret",
    "ApiTokenUpdate",
    "ConstraintViolation",
    "ErrorDetail",
    "ErrorEnvelope",
    "ListField",
    "ParameterLocation",
]


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def wire(self) -> dict[str, Any]:
        """The JSON body as Dynatrace writes it: camelCase, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ListField(StrEnum):
    """Fields the list operation can return; the first five are its default."""

    ID = "id"
    NAME = "name"
    ENABLED = "enabled"
    OWNER = "owner"
    CREATION_DATE = "creationDate"
    PERSONAL_ACCESS_TOKEN = "personalAccessToken"
    EXPIRATION_DATE = "expirationDate"
    LAST_USED_DATE = "lastUsedDate"
    LAST_USED_IP_ADDRESS = "lastUsedIpAddress"
    MODIFIED_DATE = "modifiedDate"
    SCOPES = "scopes"
    ADDITIONAL_METADATA = "additionalMetadata"


DEFAULT_LIST_FIELDS = (
    ListField.ID,
    ListField.NAME,
    ListField.ENABLED,
    ListField.OWNER,
    ListField.CREATION_DATE,
)


class ApiToken(_Wire):
    """A token's metadata. Every property is optional: absent means unknown or not requested."""

    id: str | None = None
    name: str | None = None
    enabled: bool | None = None
    personal_access_token: bool | None = None
    owner: str | None = None
    creation_date: str | None = None
    expiration_date: str | None = None
    last_used_date: str | None = None
    last_used_ip_address: str | None = None
    modified_date: str | None = None
    scopes: list[str] | None = None
    additional_metadata: dict[str, Any] | None = None


class ApiTokenCreate(_Wire):
    name: str
    scopes: list[str]
    expiration_date: str | None = None
    personal_access_token: bool | None = None


class ApiTokenCreated(_Wire):
    """The create response: the only time Dynatrace ever returns the secret."""

    id: str | None = None
    token: TokenSecret | None = None
    expiration_date: str | None = None


class ApiTokenUpdate(_Wire):
    """A PUT body. `scopes` replaces the whole list; expiry and personal-access-token are immutable."""

    name: str | None = None
    enabled: bool | None = None
    scopes: list[str] | None = None


class ApiTokenSecret(_Wire):
    """The lookup request body."""

    token: TokenSecret


class ApiTokenList(_Wire):
    api_tokens: list[ApiToken] = Field(default_factory=list)
    next_page_key: str | None = None
    page_size: int | None = None
    total_count: int


class ParameterLocation(StrEnum):
    PATH = "PATH"
    PAYLOAD_BODY = "PAYLOAD_BODY"
    QUERY = "QUERY"
    HEADER = "HEADER"


class ConstraintViolation(_Wire):
    path: str | None = None
    message: str | None = None
    parameter_location: str | None = None
    location: str | None = None


class ErrorDetail(_Wire):
    code: int | None = None
    message: str | None = None
    constraint_violations: list[ConstraintViolation] | None = None


class ErrorEnvelope(_Wire):
    error: ErrorDetail
