"""The emulated environment's tokens: O(1) by id and by secret hash, with the API's change rules.

Every mutation goes through here, so the rules that are not about HTTP live in one place: a new token
is enabled; `modifiedDate` moves when the name or the scopes change and not on enable/disable; a use
updates `lastUsedDate` and `lastUsedIpAddress`. After each mutation the `persist` hook runs (the state
file); a mere use does not trigger it (that would put a disk write on every request): uses are saved
with the next mutation or at shutdown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from apitoken_emulator.tokens import TokenRecord, hash_secret, millis, mint_secret
from apitoken_operator.dynatrace.secrets import TokenSecret

__all__ = ["TokenStore"]


class TokenStore:
    """Tokens by id, in creation order. `version` counts mutations, `usage_version` counts uses."""

    def __init__(self, *, persist: Callable[[TokenStore], None] | None = None) -> None:
        self._by_id: dict[str, TokenRecord] = {}
        self._id_by_hash: dict[str, str] = {}
        self._persist = persist
        self._sequence = 0
        self.version = 0
        self.usage_version = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[TokenRecord]:
        return iter(list(self._by_id.values()))

    def __contains__(self, token_id: object) -> bool:
        return token_id in self._by_id

    def get(self, token_id: str) -> TokenRecord | None:
        return self._by_id.get(token_id)

    def by_secret(self, secret: str) -> TokenRecord | None:
        token_id = self._id_by_hash.get(hash_secret(secret))
        return None if token_id is None else self._by_id.get(token_id)

    def create(
        self,
        *,
        name: str,
        scopes: tuple[str, ...],
        owner: str,
        now: datetime,
        personal_access_token: bool = False,
        expiration_date: datetime | None = None,
        enabled: bool = True,
        additional_metadata: dict[str, Any] | None = None,
        secret: str | None = None,
    ) -> tuple[TokenRecord, TokenSecret]:
        """Mint (or, with `secret`, import) a token and return it with its secret, the only time it exists."""
        value = secret if secret is not None else mint_secret()
        while secret is None and value.rsplit(".", 1)[0] in self._by_id:  # 36^24: never, but be exact
            value = mint_secret()
        token_id = value.rsplit(".", 1)[0]
        if token_id in self._by_id:
            raise ValueError(f"a token with id {token_id} already exists")
        self._sequence += 1
        record = TokenRecord(
            id=token_id,
            secret_hash=hash_secret(value),
            name=name,
            scopes=tuple(dict.fromkeys(scopes)),
            owner=owner,
            personal_access_token=personal_access_token,
            enabled=enabled,
            creation_date=now,
            sequence=self._sequence,
            expiration_date=expiration_date,
            additional_metadata=additional_metadata,
        )
        self._index(record)
        self._changed()
        return record, TokenSecret(value)

    def update(
        self,
        record: TokenRecord,
        *,
        now: datetime,
        name: str | None = None,
        scopes: tuple[str, ...] | None = None,
        enabled: bool | None = None,
    ) -> None:
        """Apply a PUT: `scopes` replaces the list; only a real name or scope change is a modification."""
        modified = False
        if name is not None and name != record.name:
            record.name = name
            modified = True
        if scopes is not None:
            unique = tuple(dict.fromkeys(scopes))
            if set(unique) != set(record.scopes):
                modified = True
            record.scopes = unique
        if enabled is not None:
            record.enabled = enabled
        if modified:
            record.modified_date = millis(now)
        record.invalidate()
        self._changed()

    def delete(self, record: TokenRecord) -> None:
        del self._by_id[record.id]
        self._id_by_hash.pop(record.secret_hash, None)
        self._changed()

    def mark_used(self, record: TokenRecord, *, now: datetime, ip_address: str | None) -> None:
        record.last_used_date = millis(now)
        record.last_used_ip_address = ip_address
        record.invalidate()
        self.usage_version += 1

    def load(self, records: list[TokenRecord]) -> None:
        """Replace the content with records read from the state file (no persist: nothing changed)."""
        self._by_id.clear()
        self._id_by_hash.clear()
        for record in sorted(records, key=lambda item: item.sequence):
            self._index(record)
        self._sequence = max((record.sequence for record in records), default=0)
        self.version += 1

    def states(self) -> list[dict[str, Any]]:
        return [record.to_state() for record in self._by_id.values()]

    def _index(self, record: TokenRecord) -> None:
        self._by_id[record.id] = record
        self._id_by_hash[record.secret_hash] = record.id

    def _changed(self) -> None:
        self.version += 1
        if self._persist is not None:
            self._persist(self)
