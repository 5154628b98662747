"""One connection's view of its environment's tokens, taken with list calls rather than one GET each.

A listing is trusted for `max_age` seconds; concurrent callers share one refresh (single flight), so
resuming 1,000 objects after a restart costs one list call per 10,000 tokens, not 1,000 GETs.

A listing describes the past: Dynatrace reads the tokens, then takes seconds to answer a large page, and
offset-based pages shift when a token is deleted between two of them, so a live token can be missing.
Hence two rules. The operator's own writes (`remember` / `forget`) are stamped, and a listing that began
before a write never undoes it: a token made while a listing was under way stays in the view. And
absence from a listing is only a hint: `confirm` asks for the token by id before anyone acts on it
being gone, unless the operator itself saw it go (its own delete, or a 404).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from apitoken_operator.dynatrace import errors
from apitoken_operator.dynatrace.client import DynatraceClient
from apitoken_operator.dynatrace.models import ApiToken, ListField
from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.reconcile.status import last_used_period
from apitoken_operator.settings import ObservationSettings

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
        self,
        client: DynatraceClient,
        *,
        max_age: float,
        monotonic: Callable[[], float] = time.monotonic,
        last_used_interval: float = 3600.0,
        page_size: int = MAX_PAGE_SIZE,
        limits: ObservationSettings | None = None,
    ) -> None:
        """`last_used_interval`: a token's use alone (lastUsedDate) counts as a change once per this many
        seconds, so tokens in constant use do not bring their objects back at every drift check.
        `page_size`, `limits`: one listing's page size and its bounds (a server that streams endless
        pages, or answers a page a minute, holds no memory or task for ever)."""
        self._client = client
        self._page_size = page_size
        self._limits = limits or ObservationSettings()
        self._last_used_interval = last_used_interval
        self._max_age = max_age
        self._monotonic = monotonic
        #: the last listing, packed (a tuple of fields per token: a tenth of a model's memory)
        self._tokens: dict[str, Packed] = {}
        self._taken_at: float | None = None
        self._refreshing: asyncio.Task[None] | None = None
        #: a counter stamping writes and listing starts: which came first
        self._epoch = 0
        #: id -> (stamp, what the operator wrote: the token, or None for gone) since the last listing began
        self._written: dict[str, tuple[int, Packed | None]] = {}
        #: id -> monotonic time the operator saw the token go (its delete, a 404)
        self._gone: dict[str, float] = {}
        self.list_calls = 0
        self.confirm_calls = 0
        #: the last listing's error, and when (see `ObservationSettings.failure_backoff`)
        self._failure: Exception | None = None
        self._failed_at = 0.0
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
        failure = self._failure
        if failure is not None and self._monotonic() - self._failed_at < self._limits.failure_backoff:
            raise failure.with_traceback(None)
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._list())
        await asyncio.shield(self._refreshing)

    async def close(self) -> None:
        """Stop a listing under way (it runs in its own task, shielded from the callers that wait)."""
        task, self._refreshing = self._refreshing, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _list(self) -> None:
        try:
            await self._list_once()
        except Exception as error:
            # Kept without its traceback and chain, which would hold the frames (and answers) it
            # passed through.
            error.__cause__ = error.__context__ = None
            self._failure, self._failed_at = error.with_traceback(None), self._monotonic()
            raise
        self._failure = None

    async def _list_once(self) -> None:
        started = self._monotonic()
        self._epoch += 1
        began = self._epoch
        tokens: dict[str, Packed] = {}
        try:
            async with asyncio.timeout(self._limits.listing_deadline):
                async for token in self._client.list_tokens(
                    fields=OBSERVED_FIELDS, page_size=self._page_size
                ):
                    if token.id:
                        tokens[token.id] = _pack(token)
                    if len(tokens) > self._limits.max_tokens:
                        raise _too_large(f"the listing passed {self._limits.max_tokens:,} tokens")
        except TimeoutError:
            raise _too_large(f"the listing took longer than {self._limits.listing_deadline:.0f} s") from None
        except (errors.Unauthorized, errors.Forbidden):
            # The credential no longer works: the view it gave is not to be trusted for anything now, so
            # every reconcile looks again (and says why it cannot) instead of acting on the old view.
            self._taken_at = None
            raise
        self.list_calls += 1
        for token_id, (stamp, written) in list(self._written.items()):
            if stamp < began:  # the listing began after this write: it reports it, or something newer
                del self._written[token_id]
            elif written is None:
                tokens.pop(token_id, None)
            else:
                tokens[token_id] = written
        forgotten = started - self._limits.gone_memory
        self._gone = {i: when for i, when in self._gone.items() if when > forgotten}
        previous, self._tokens = self._tokens, tokens
        first = self._taken_at is None
        self._taken_at = started
        if not first and self.on_change is not None:
            interval = self._last_used_interval
            # Most tokens are exactly as before: the fingerprint (which reads dates) only for the rest.
            changed = {
                i
                for i in previous.keys() | tokens.keys()
                if previous.get(i) != tokens.get(i)
                and _fingerprint(previous.get(i), interval) != _fingerprint(tokens.get(i), interval)
            }
            if changed:
                self.on_change(changed)

    def known_ids(self) -> set[str]:
        """The ids in the view: the tokens this connection sees (and its objects record)."""
        return set(self._tokens)

    async def confirm(self, token_id: str) -> ApiToken | None:
        """The token by id (a GET), for one a listing did not show: None only when it is surely gone."""
        if token_id in self._gone:
            return None
        self.confirm_calls += 1
        try:
            token = await self._client.get(token_id)
        except errors.NotFound:
            self.forget(token_id)
            return None
        self.remember(token)
        return token

    async def proves(self, secret: TokenSecret, *, token_id: str) -> bool:
        """Whether `secret` is the live secret of `token_id` (a lookup); its metadata is kept if so."""
        try:
            token = await self._client.lookup(secret)
        except errors.NotFound:
            return False
        if token.id != token_id:
            return False
        self.remember(token)
        return True

    def remember(self, token: ApiToken) -> None:
        """What the operator wrote or read by id: newer than any listing under way."""
        if token.id:
            self._epoch += 1
            packed = _pack(token)
            self._tokens[token.id] = packed
            self._written[token.id] = (self._epoch, packed)
            self._gone.pop(token.id, None)

    def forget(self, token_id: str) -> None:
        """The token is gone (deleted by the operator, or a 404)."""
        self._epoch += 1
        self._tokens.pop(token_id, None)
        self._written[token_id] = (self._epoch, None)
        self._gone[token_id] = self._monotonic()


#: a token's fields in `ApiToken.model_fields` order
Packed = tuple[Any, ...]
FIELDS = tuple(ApiToken.model_fields)


def _too_large(why: str) -> errors.UnexpectedResponse:
    return errors.UnexpectedResponse(f"{why}; stopped", status=200, operation="GET /apiTokens")


def _pack(token: ApiToken) -> Packed:
    return tuple(getattr(token, name) for name in FIELDS)


def _unpack(packed: Packed) -> ApiToken:
    """The model again, without validating twice (it was validated when listed or made)."""
    values = dict(zip(FIELDS, packed, strict=True))
    return ApiToken.model_construct({name for name, value in values.items() if value is not None}, **values)


def _fingerprint(packed: Packed | None, last_used_interval: float) -> tuple[object, ...] | None:
    """What a change of would matter to an ApiToken: what it compares, and what its status shows.

    The last use (date and address) moves whenever a consumer calls Dynatrace; it counts only when it
    enters another `last_used_interval`, which is how often the status reports it.
    """
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
        last_used_period(token["last_used_date"], interval=last_used_interval, token_id=token["id"]),
        token["owner"],
        token["creation_date"],
    )
