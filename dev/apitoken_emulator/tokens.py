"""One emulated token: its record, how ids and secrets are minted, and how it is written on the wire.

Only the SHA-256 of a secret is kept: authentication, lookup and delete-by-secret hash what the client
sends and look the hash up, so neither memory dumps nor the state file hold a usable secret.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from apitoken_operator.dynatrace.dates import format_date

__all__ = ["TOKEN_PREFIX", "TokenRecord", "hash_secret", "millis", "mint_secret"]

TOKEN_PREFIX = "dt0c01"
_ALPHABET = string.ascii_uppercase + string.digits
PUBLIC_LENGTH = 24
SECRET_LENGTH = 64


def _random_part(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def mint_secret(prefix: str = TOKEN_PREFIX) -> str:
    """A new full token `prefix.PUBLIC.SECRET` in Dynatrace's format, from a CSPRNG."""
    return f"{prefix}.{_random_part(PUBLIC_LENGTH)}.{_random_part(SECRET_LENGTH)}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def millis(moment: datetime) -> datetime:
    """Dynatrace keeps milliseconds; so does the emulator, so what is stored equals what is read back."""
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


@dataclass(eq=False, slots=True)
class TokenRecord:
    """A token's state. Change it through `TokenStore` so caches, indexes and the state file follow."""

    id: str
    secret_hash: str
    name: str
    scopes: tuple[str, ...]
    owner: str
    personal_access_token: bool
    enabled: bool
    creation_date: datetime
    sequence: int
    expiration_date: datetime | None = None
    modified_date: datetime | None = None
    last_used_date: datetime | None = None
    last_used_ip_address: str | None = None
    additional_metadata: dict[str, Any] | None = None
    _wire: dict[str, Any] | None = field(default=None, repr=False)
    _fragments: dict[tuple[str, ...], str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.creation_date = millis(self.creation_date)
        if self.expiration_date is not None:
            self.expiration_date = millis(self.expiration_date)

    def is_expired(self, now: datetime) -> bool:
        return self.expiration_date is not None and self.expiration_date <= now

    def invalidate(self) -> None:
        self._wire = None
        self._fragments.clear()

    def fragment(self, fields: tuple[str, ...]) -> str:
        """The JSON text of the chosen fields (cached: list pages are joined from these, not re-encoded)."""
        text = self._fragments.get(fields)
        if text is None:
            body = self.wire()
            text = json.dumps(
                {name: body[name] for name in fields if name in body},
                separators=(",", ":"),
                ensure_ascii=False,
            )
            self._fragments[fields] = text
        return text

    def wire(self) -> dict[str, Any]:
        """The full `ApiToken` body (cached until the record changes); absent values are left out."""
        if self._wire is None:
            body: dict[str, Any] = {
                "id": self.id,
                "name": self.name,
                "enabled": self.enabled,
                "personalAccessToken": self.personal_access_token,
                "owner": self.owner,
                "creationDate": format_date(self.creation_date),
                "scopes": list(self.scopes),
            }
            optional = {
                "expirationDate": self.expiration_date,
                "lastUsedDate": self.last_used_date,
                "modifiedDate": self.modified_date,
            }
            body.update({key: format_date(value) for key, value in optional.items() if value is not None})
            if self.last_used_ip_address is not None:
                body["lastUsedIpAddress"] = self.last_used_ip_address
            if self.additional_metadata is not None:
                body["additionalMetadata"] = dict(self.additional_metadata)
            self._wire = body
        return self._wire

    def to_state(self) -> dict[str, Any]:
        """The record as the state file keeps it: the wire body plus the secret's hash and order."""
        return {**self.wire(), "secretSha256": self.secret_hash, "sequence": self.sequence}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> TokenRecord:
        """Inverse of `to_state`; raises KeyError, TypeError or ValueError on a malformed entry."""

        def date(key: str) -> datetime | None:
            value = data.get(key)
            return None if value is None else datetime.fromisoformat(str(value))

        creation = date("creationDate")
        if creation is None:
            raise ValueError("creationDate is missing")
        return cls(
            id=str(data["id"]),
            secret_hash=str(data["secretSha256"]),
            name=str(data["name"]),
            scopes=tuple(str(scope) for scope in data["scopes"]),
            owner=str(data["owner"]),
            personal_access_token=bool(data["personalAccessToken"]),
            enabled=bool(data["enabled"]),
            creation_date=creation,
            sequence=int(data["sequence"]),
            expiration_date=date("expirationDate"),
            modified_date=date("modifiedDate"),
            last_used_date=date("lastUsedDate"),
            last_used_ip_address=data.get("lastUsedIpAddress"),
            additional_metadata=data.get("additionalMetadata"),
        )
