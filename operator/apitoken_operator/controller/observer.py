"""One connection's view of its environment's tokens, taken with list calls rather than one GET each.

A listing is trusted for `max_age` seconds; concurrent callers share one refresh (single flight), so
resuming 1,000 objects after a restart costs one list call per 10,000 tokens, not 1,000 GETs. The
operator's own writes are folded in at once (`remember` / `forget`), so it never mistakes a token it
just made for one deleted outside.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from apitoken_operator.dynatrace.client import DynatraceClient
from apitoken_operator.dynatrace.models import ApiToken, ListField

#: Everything the operator compares or reports, in one list call.
OBSERVED_FIELDS = (
    ListField.PERSONAL_ACCESS_TOKEN,
    ListField.EXPIRATION_DATE,
    ListField.LAST_USED_DATE,
    ListField.LAST_USED_IP_ADDRESS,
    ListField.MODIFIED_DATE,
    ListField.SCOPES,
)
MAX_PAGE_SIZE = 10000


class Observer:
    def __init__(
        self, client: DynatraceClient, *, max_age: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._max_age = max_age
        self._monotonic = monotonic
        #: the last listing, packed (a tuple of fields per token: a tenth of a model's memory)
        self._tokens: dict[str, Packed] = {}
        self._taken_at: float | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self.list_calls = 0
        #: told the ids whose observed state changed (or vanished) between two listings
        self.on_change: Callable[[set[str]], None] | None = None

    def fresh(self, max_age: float | None = None) -> bool:
        age = self._max_age if max_age is None else max_age
        return self._taken_at is not None and self._monotonic() - self._taken_at <= age

    async def token(self, token_id: str, *, max_age: float | None = None) -> ApiToken | None:
        if not self.fresh(max_age):
            await self.refresh()
        packed = self._tokens.get(token_id)
        return _unpack(packed) if packed is not None else None

    async def tokens(self, *, max_age: float | None = None) -> dict[str, ApiToken]:
        if not self.fresh(max_age):
            await self.refresh()
        return {token_id: _unpack(packed) for token_id, packed in self._tokens.items()}

    async def refresh(self) -> None:
        """List every token; callers arriving while a listing runs wait for that one."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._list())
        await asyncio.shield(self._refreshing)

    async def _list(self) -> None:
        started = self._monotonic()
        tokens: dict[str, Packed] = {}
        async for token in self._client.list_tokens(fields=OBSERVED_FIELDS, page_size=MAX_PAGE_SIZE):
            if token.id:
                tokens[token.id] = _pack(token)
        self.list_calls += 1
        previous, self._tokens = self._tokens, tokens
        first = self._taken_at is None
        self._taken_at = started
        if not first and self.on_change is not None:
            changed = {
                i
                for i in previous.keys() | tokens.keys()
                if _fingerprint(previous.get(i)) != _fingerprint(tokens.get(i))
            }
            if changed:
                self.on_change(changed)

    def remember(self, token: ApiToken) -> None:
        if token.id:
            self._tokens[token.id] = _pack(token)

    def forget(self, token_id: str) -> None:
        self._tokens.pop(token_id, None)


#: a token's fields in `ApiToken.model_fields` order
Packed = tuple[Any, ...]
FIELDS = tuple(ApiToken.model_fields)


def _pack(token: ApiToken) -> Packed:
    return tuple(getattr(token, name) for name in FIELDS)


def _unpack(packed: Packed) -> ApiToken:
    """The model again, without validating twice (it was validated when listed or made)."""
    values = dict(zip(FIELDS, packed, strict=True))
    return ApiToken.model_construct({name for name, value in values.items() if value is not None}, **values)


def _fingerprint(packed: Packed | None) -> tuple[object, ...] | None:
    """What a change of would matter to an ApiToken: what it compares, and what its status shows."""
    if packed is None:
        return None
    token = dict(zip(FIELDS, packed, strict=True))
    return (
        token["name"],
        token["enabled"],
        tuple(sorted(token["scopes"] or ())),
        token["personal_access_token"],
        token["expiration_date"],
        token["modified_date"],
        token["last_used_date"],
        token["last_used_ip_address"],
        token["owner"],
        token["creation_date"],
    )
