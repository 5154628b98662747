"""The async Tokens API v2 client: one request loop with retries; the verbs are one-liners over it.

Retried, with bounded full-jitter exponential backoff that honours `Retry-After` and
`X-RateLimit-Reset` (see `backoff.py`), until `max_attempts` or the call's `deadline` runs out:

- 429 Throttled, always: the server refused the request before acting on it;
- refused connections, connect and pool timeouts: nothing was sent;
- 502/503/504, read/write timeouts and dropped connections, **except for a create**: the request may
  have been acted on. Reads, updates (a PUT of the same body) and deletes are safe to repeat; a create
  is not (names are not unique), so it raises `CreateOutcomeUnknown` instead, as it does for any 5xx
  and for a success body it cannot read.

Everything else is raised at once, translated into the tree of `errors.py`. The token secret goes
only into the `Authorization` header (never a query parameter), and every message is scrubbed of it.

The clock, the sleep and the random source are injected, so tests see the exact delays without
waiting; `on_retry` reports each retry (for logs, metrics and tests).

Longer than most modules on purpose: the request loop and its safeguards (the call's deadline, the
connection's request slots, the size caps that stop an endless body) are one piece whose interplay is
the point, and splitting it would hide which of them applies to which verb.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from apitoken_operator import version
from apitoken_operator.dynatrace import backoff, queries, urls
from apitoken_operator.dynatrace.errors import (
    ConfigurationError,
    CreateOutcomeUnknown,
    DynatraceError,
    DynatraceTransportError,
    ServiceUnavailable,
    UnexpectedResponse,
    error_from_response,
    trim,
)
from apitoken_operator.dynatrace.models import (
    ApiToken,
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenList,
    ApiTokenUpdate,
    ListField,
)
from apitoken_operator.dynatrace.secrets import MASK, TokenSecret, contains_secret, mask_secrets
from apitoken_operator.dynatrace.transport import AiohttpTransport, UnsupportedProxy, env_proxy
from apitoken_operator.settings import DynatraceSettings

__all__ = ["USER_AGENT", "DynatraceClient", "RetryEvent"]

logger = logging.getLogger(__name__)

USER_AGENT = f"dynatrace-apitoken-operator/{version.__version__}"

#: Statuses retried when repeating the request is safe; 429 is retried even for a create.
_RETRIED_STATUSES = frozenset({429, 502, 503, 504})
#: Failures before any byte of the request left: nothing reached the server. Anything else (a read or
#: write timeout, a reset, a server closing the connection, an undecodable body) may have.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
)
#: Transport failures worth another attempt (timeouts, resets, a server closing the connection).
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

#: An answer about one token (create, get, lookup, an error) is a few kilobytes; more is not read.
MAX_SINGLE_RESPONSE_BYTES = 1024 * 1024

_Model = TypeVar("_Model", bound=pydantic.BaseModel)


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen: which call, which attempt failed, how long the client will wait."""

    operation: str
    #: The attempt that failed, 1-based.
    attempt: int
    #: Seconds the client sleeps before the next attempt.
    delay: float
    #: Seconds the server asked for (Retry-After / X-RateLimit-Reset), None when it did not say.
    hint: float | None
    error: DynatraceError


@dataclass(frozen=True)
class CallEvent:
    """One HTTP attempt: the operation (create, get, update, delete, lookup, list), its HTTP status or
    transport error class, and how long it took. For metrics."""

    operation: str
    outcome: str
    seconds: float


_VERBS = {
    ("POST", "apiTokens"): "create",
    ("GET", "apiTokens"): "list",
    ("POST", "apiTokens/lookup"): "lookup",
    ("GET", "apiTokens/{id}"): "get",
    ("PUT", "apiTokens/{id}"): "update",
    ("DELETE", "apiTokens/{id}"): "delete",
}


class _ApiTokenAuth(httpx.Auth):
    """Adds `Authorization: Api-Token …` to each request; the client keeps the secret here only."""

    def __init__(self, token: TokenSecret) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Api-Token {self._token.reveal()}"
        yield request

    def __repr__(self) -> str:
        return f"_ApiTokenAuth({self._token.token_id!r})"


class DynatraceClient:
    """An async client of one environment's Tokens API v2, over one pooled `httpx.AsyncClient`.

    Use it as an async context manager, or call `aclose()`. `base_url` is any form `urls.api_root`
    accepts; `transport` swaps the network for tests (`httpx.MockTransport`, `httpx.ASGITransport`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: TokenSecret,
        settings: DynatraceSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_retry: Callable[[RetryEvent], object] | None = None,
        on_call: Callable[[CallEvent], object] | None = None,
        quote_unstructured_errors: bool = True,
    ) -> None:
        """`quote_unstructured_errors=False` keeps error messages to Dynatrace's error envelope and the
        status code: for URLs chosen by someone who must not read arbitrary answers through our messages."""
        if not isinstance(token, TokenSecret):
            raise ConfigurationError("token must be a TokenSecret, so that it cannot be logged")
        self.api_root = urls.api_root(base_url)
        self.settings = settings or DynatraceSettings()
        self._token = token
        self._sleep = sleep
        self._random = random
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._on_retry = on_retry
        self._on_call = on_call
        self._envelope_only = not quote_unstructured_errors
        self._in_flight = asyncio.Semaphore(self.settings.max_concurrent_calls)
        self._timeout = httpx.Timeout(
            connect=self.settings.connect_timeout,
            read=self.settings.read_timeout,
            write=self.settings.read_timeout,
            pool=self.settings.read_timeout,
        )
        limits = httpx.Limits(
            max_connections=self.settings.max_connections,
            max_keepalive_connections=self.settings.max_connections,
        )
        own_proxies = transport is None
        if transport is None:
            try:  # httpx's API over aiohttp's I/O, a tenth of the CPU per call (dynatrace/transport.py)
                transport = AiohttpTransport(limits=limits, proxy=env_proxy(self.api_root))
            except UnsupportedProxy:
                own_proxies = False  # httpx's own transport, which reads the environment's proxies
        self._http = httpx.AsyncClient(
            base_url=self.api_root + "/",
            auth=_ApiTokenAuth(token),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=self._timeout,
            limits=limits,
            transport=transport,
            follow_redirects=False,
            # our transport was given the environment's proxy already: httpx must not mount its own
            trust_env=not own_proxies,
        )

    def __repr__(self) -> str:
        return f"DynatraceClient({self.api_root!r}, token={self._token.token_id!r})"

    async def __aenter__(self) -> DynatraceClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def token_id(self) -> str:
        """The id of the token this client authenticates with (safe to show)."""
        return self._token.token_id

    # --- verbs -------------------------------------------------------------------------------------

    async def create(self, request: ApiTokenCreate) -> ApiTokenCreated:
        """Create a token; the answer carries its secret, the only time Dynatrace ever returns it.

        Raises `CreateOutcomeUnknown` when the request may have reached the server but no usable answer
        came back; it is never retried then.
        """
        try:
            response = await self._call("POST", "apiTokens", body=request.wire(), repeatable=False)
            created = self._parse(response, ApiTokenCreated, operation="POST /apiTokens")
        except DynatraceTransportError as error:
            if not error.request_sent:
                raise
            raise self._outcome_unknown(error, request=request) from error
        except (ServiceUnavailable, UnexpectedResponse) as error:
            if isinstance(error, UnexpectedResponse) and not 200 <= error.status < 300:
                raise  # a redirect or an undocumented 4xx: the server did not create anything
            raise self._outcome_unknown(error, request=request) from error
        if created.id is None or created.token is None:
            raise self._outcome_unknown(
                "the server answered without the token's id or secret", request=request
            )
        return created

    async def get(self, token_id: str | TokenSecret) -> ApiToken:
        """A token's metadata by id (never its secret)."""
        path = _token_path(token_id)
        return self._parse(await self._call("GET", path), ApiToken, operation=f"GET /{path}")

    async def update(self, token_id: str | TokenSecret, update: ApiTokenUpdate) -> None:
        """Change name, enabled and/or scopes; `scopes` replaces the whole list."""
        await self._call("PUT", _token_path(token_id), body=update.wire())

    async def delete(self, token_id: str | TokenSecret) -> None:
        """Delete a token. A 404 raises `NotFound`: the caller decides whether "already gone" is success."""
        await self._call("DELETE", _token_path(token_id))

    async def lookup(self, secret: TokenSecret) -> ApiToken:
        """The metadata of the token whose secret is given; `NotFound` when no such token exists."""
        response = await self._call(
            "POST", "apiTokens/lookup", body={"token": secret.reveal()}, secrets=(secret,)
        )
        return self._parse(response, ApiToken, operation="POST /apiTokens/lookup")

    async def list_page(
        self,
        *,
        page_key: str | None = None,
        fields: Sequence[ListField | str] | None = None,
        exact_fields: bool = False,
        selector: str | queries.Renderable | None = None,
        sort: str | None = None,
        page_size: int | None = None,
        used_from: str | None = None,
        used_to: str | None = None,
    ) -> ApiTokenList:
        """One page of the list. A continuation (`page_key`) carries only that key: no filter may be given."""
        if page_key is not None and any(
            value is not None for value in (fields, selector, sort, page_size, used_from, used_to)
        ):
            raise ConfigurationError(
                "a continuation request (page_key) carries only the page key; drop the filters"
            )
        params = queries.list_params(
            page_key=page_key,
            page_size=self.settings.list_page_size if page_size is None else page_size,
            fields=fields,
            exact_fields=exact_fields,
            selector=selector,
            sort=sort,
            used_from=used_from,
            used_to=used_to,
        )
        response = await self._call("GET", "apiTokens", params=params)
        return self._parse(response, ApiTokenList, operation="GET /apiTokens")

    async def list_tokens(
        self,
        *,
        fields: Sequence[ListField | str] | None = None,
        exact_fields: bool = False,
        selector: str | queries.Renderable | None = None,
        sort: str | None = None,
        page_size: int | None = None,
        used_from: str | None = None,
        used_to: str | None = None,
    ) -> AsyncIterator[ApiToken]:
        """Every matching token, following `nextPageKey` page by page (each page is one retried call)."""
        page = await self.list_page(
            fields=fields,
            exact_fields=exact_fields,
            selector=selector,
            sort=sort,
            page_size=page_size,
            used_from=used_from,
            used_to=used_to,
        )
        seen: set[str] = set()
        # A walk may meet tokens created meanwhile, but not many times more than the first page counted:
        # a server that never stops paging is cut off.
        most = page.total_count + max(1000, page.total_count // 10)
        served = 0
        while True:
            served += len(page.api_tokens)
            if served > most:
                raise UnexpectedResponse(
                    f"the server kept paging past the {page.total_count:,} tokens it counted; stopping",
                    status=200,
                    operation="GET /apiTokens",
                )
            for token in page.api_tokens:
                yield token
            if not page.next_page_key:
                return
            if page.next_page_key in seen:
                raise UnexpectedResponse(
                    "the server repeated a page key; stopping instead of looping",
                    status=200,
                    operation="GET /apiTokens",
                )
            seen.add(page.next_page_key)
            page = await self.list_page(page_key=page.next_page_key)

    # --- the request loop --------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        repeatable: bool = True,
        secrets: Sequence[TokenSecret] = (),
    ) -> httpx.Response:
        """Send until success, a final error, `max_attempts` or the deadline; return a 2xx response.

        `repeatable=False` (a create) stops retrying at the first failure after which the request may
        have been acted on, and raises that failure for the caller to translate.
        """
        retry = self.settings.retry
        operation = f"{method} /{path}"
        scrub = self._scrubber(secrets)
        deadline = self._monotonic() + retry.deadline
        attempt = 0
        while True:
            attempt += 1
            cause: BaseException | None = None
            hint: float | None = None
            error: DynatraceError
            started = self._monotonic()
            try:
                await self._take_slot(deadline)
                try:
                    response = await self._send(method, path, body=body, params=params, deadline=deadline)
                finally:
                    self._in_flight.release()
            except httpx.RequestError as exc:
                self._report(method, path, type(exc).__name__, started)
                cause, error = (
                    exc,
                    _transport_error(exc, operation=operation, scrub=scrub, quiet=self._envelope_only),
                )
                retryable = isinstance(exc, _TRANSIENT) and (repeatable or not error.request_sent)
            else:
                self._report(method, path, str(response.status_code), started)
                if response.is_success:
                    return response
                hint = backoff.server_hint(response.headers, now=self._wall_clock())
                error = error_from_response(
                    status=response.status_code,
                    body=response.content,
                    operation=operation,
                    retry_after=hint,
                    scrub=scrub,
                    envelope_only=self._envelope_only,
                )
                retryable = response.status_code in _RETRIED_STATUSES and (
                    repeatable or response.status_code == 429
                )
            error.attempts = attempt
            if not retryable:
                raise error from cause
            if attempt >= retry.max_attempts:
                error.add_note(f"gave up after {attempt} attempts (max_attempts)")
                raise error from cause
            delay = backoff.backoff_delay(attempt, settings=retry, hint=hint, random=self._random)
            if self._monotonic() + delay > deadline:
                error.add_note(
                    f"gave up after {attempt} attempts: a {delay:.2f}s wait would pass the deadline"
                )
                raise error from cause
            logger.info(
                "%s failed (attempt %d of %d), retrying in %.2fs: %s",
                operation,
                attempt,
                retry.max_attempts,
                delay,
                error,
            )
            if self._on_retry is not None:
                self._on_retry(
                    RetryEvent(operation=operation, attempt=attempt, delay=delay, hint=hint, error=error)
                )
            await self._sleep(delay)

    async def _send(
        self, method: str, path: str, *, body: Any, params: dict[str, str] | None, deadline: float
    ) -> httpx.Response:
        """One attempt, read whole, but never past the call's deadline nor `max_response_bytes`.

        httpx's timeouts bound each wait for a byte; a server that trickles bytes, or streams an endless
        answer, would pass them all. A Dynatrace answer is a page of at most 10,000 tokens.
        """
        remaining = deadline - self._monotonic()
        request = self._http.build_request(
            method, path, json=body, params=params, timeout=self._attempt_timeout(remaining)
        )
        try:
            async with asyncio.timeout(max(remaining, 0.001)):
                response = await self._http.send(request, stream=True)
                try:
                    content = bytearray()
                    listing = method == "GET" and path == "apiTokens"
                    limit = self.settings.max_response_bytes if listing else MAX_SINGLE_RESPONSE_BYTES
                    async for chunk in response.aiter_bytes():
                        content += chunk
                        if len(content) > limit:
                            content.clear()  # the error's traceback keeps this frame: not its bytes
                            raise httpx.DecodingError(
                                f"the answer passed {limit:,} bytes; not read further", request=request
                            )
                finally:
                    await response.aclose()
        except TimeoutError:
            raise httpx.ReadTimeout(
                "the call's deadline passed while the answer was read", request=request
            ) from None
        # the bytes read are decoded already (aiter_bytes undoes gzip/deflate): the answer kept must not
        # say it is still encoded, or reading it decodes a second time and fails
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(response.status_code, headers=headers, content=bytes(content), request=request)

    async def _take_slot(self, deadline: float) -> None:
        """The connection's share of the environment's request pool, waited for within the deadline.

        No request goes out after its call's deadline, however long the queue: a create not sent by
        then never will be, which is what lets another replica settle its intent safely.
        """
        if not self._in_flight.locked():  # a free slot: no timer needed
            await self._in_flight.acquire()
            return
        try:
            waiting = max(deadline - self._monotonic(), 0.001)
            await asyncio.wait_for(self._in_flight.acquire(), timeout=waiting)
        except TimeoutError:
            raise httpx.PoolTimeout("no request slot was free before the call's deadline") from None
        if self._monotonic() >= deadline:
            self._in_flight.release()
            raise httpx.PoolTimeout("no request slot was free before the call's deadline")

    def _report(self, method: str, path: str, outcome: str, started: float) -> None:
        if self._on_call is not None:
            verb = _VERBS.get((method, path)) or _VERBS[method, "apiTokens/{id}"]
            self._on_call(CallEvent(operation=verb, outcome=outcome, seconds=self._monotonic() - started))

    def _attempt_timeout(self, remaining: float) -> httpx.Timeout:
        """The configured timeouts, shortened so that one attempt cannot outlive the call's deadline."""
        budget = max(remaining, 0.001)
        return httpx.Timeout(
            connect=min(self.settings.connect_timeout, budget),
            read=min(self.settings.read_timeout, budget),
            write=min(self.settings.read_timeout, budget),
            pool=min(self.settings.read_timeout, budget),
        )

    def _scrubber(self, secrets: Sequence[TokenSecret]) -> Callable[[str], str]:
        """Masks well-formed tokens anywhere, and the literal secrets this call holds even if malformed."""
        literals = [secret.reveal() for secret in (self._token, *secrets) if len(secret.reveal()) >= 8]

        def scrub(text: str) -> str:
            text = mask_secrets(text)
            for literal in literals:
                text = text.replace(literal, MASK)
            return text

        return scrub

    def _parse(self, response: httpx.Response, model: type[_Model], *, operation: str) -> _Model:
        try:
            return model.model_validate_json(response.content)
        except pydantic.ValidationError as error:
            # Not chained: a validation error quotes its input, which may hold a secret (a create's answer).
            problems = "; ".join(
                f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}"
                for problem in error.errors(include_input=False, include_url=False)[:5]
            )
            raise UnexpectedResponse(
                trim(f"the {response.status_code} answer is not a valid {model.__name__}: {problems}"),
                status=response.status_code,
                operation=operation,
            ) from None

    def _outcome_unknown(
        self, reason: DynatraceError | str, *, request: ApiTokenCreate
    ) -> CreateOutcomeUnknown:
        error = CreateOutcomeUnknown(str(reason), request=request)
        error.attempts = reason.attempts if isinstance(reason, DynatraceError) else 1
        return error


#: Transport errors whose text may quote what the server sent (h11 shows the first bytes of an answer that
#: is not HTTP: a banner, a greeting), which a quiet client must not pass on.
_QUOTING_ERRORS = (httpx.RemoteProtocolError, httpx.LocalProtocolError, httpx.DecodingError)


def _transport_error(
    exc: httpx.RequestError, *, operation: str, scrub: Callable[[str], str], quiet: bool = False
) -> DynatraceTransportError:
    if quiet and isinstance(exc, _QUOTING_ERRORS):
        detail = "the answer was not HTTP the client could read"
    else:
        detail = trim(scrub(str(exc))) or "no detail"
    return DynatraceTransportError(
        f"{operation} failed: {type(exc).__name__}: {detail}",
        operation=operation,
        request_sent=not isinstance(exc, _NOT_SENT),
        timeout=isinstance(exc, httpx.TimeoutException),
    )


def _token_path(token_id: str | TokenSecret) -> str:
    """`apiTokens/<id>`. A full token is refused: it would put the secret into URLs and access logs."""
    if isinstance(token_id, TokenSecret):
        value = token_id.token_id
        if value.startswith("<"):
            raise ConfigurationError("the token is not in the documented format; pass its id instead")
    else:
        value = token_id.strip()
        if contains_secret(value) or value.count(".") > 1:
            raise ConfigurationError("pass the token id (prefix.PUBLIC), not the full token with its secret")
        if not value:
            raise ConfigurationError("the token id is empty")
    return f"apiTokens/{quote(value, safe='')}"
