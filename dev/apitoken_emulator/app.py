"""The aiohttp application: API routes, admin routes, and the one middleware that wraps API calls.

The middleware does, in order: pick the operation from the matched route; apply the fault decision
(latency, drop, injected status, after a wait in "the queue" for a 429); take a slot of the request
pool when `throttle_capacity` is set (waiting up to `throttle_wait` for one, else 429); run the handler
and turn `ApiError` and routing errors into Dynatrace's error envelope; drop the connection after a
handled request when asked; check the response against the contract; count the outcome. One
middleware instead of a chain keeps the per-request overhead small. Admin paths (`/_emulator/...`)
bypass all of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from apitoken_emulator import admin, api
from apitoken_emulator.contract import ContractViolation
from apitoken_emulator.counters import DROPPED
from apitoken_emulator.environment import Emulator
from apitoken_emulator.faults import OPERATIONS, FaultDecision, Faults
from apitoken_emulator.problems import ApiError
from apitoken_operator.dynatrace.secrets import mask_secrets

__all__ = ["build_app"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_GATEWAY_PAGE = "<html><head><title>{status}</title></head><body><h1>{status} {reason}</h1></body></html>"


class _Dropped(Exception):
    """Close the connection without a response."""


class RequestPool:
    """The environment's request pool for `throttle_capacity`: requests served at once.

    A request takes a slot for its whole handling (post-snapshot latency included); one that finds the
    pool full waits for a free slot up to `throttle_wait`, then is refused. The capacity is read at
    each arrival, so it can change at run time; lowering it lets the requests in flight finish.
    """

    def __init__(self) -> None:
        self._in_flight = 0
        self._freed = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def acquire(self, capacity: int | None, wait: float) -> bool:
        """Take a slot; False when none became free within `wait` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while capacity is not None and self._in_flight >= capacity:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            freed = self._freed
            try:  # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
                async with asyncio.timeout(remaining):
                    await freed.wait()
            except TimeoutError:
                return False
        self._in_flight += 1
        return True

    def release(self) -> None:
        """Synchronous, so that it also runs in a request cancelled by its client's disconnect."""
        self._in_flight -= 1
        self._freed.set()  # wake every waiter; each re-checks, the first one takes the slot
        self._freed = asyncio.Event()


POOL: Final = web.AppKey("request_pool", RequestPool)


def _operation(request: web.Request) -> str:
    name = request.match_info.route.name
    return name if name in OPERATIONS else "unknown"


def _injected(decision: FaultDecision) -> web.Response:
    status = decision.status or 500
    if decision.html:
        reason = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}.get(
            status, "Server Error"
        )
        return web.Response(
            status=status, text=_GATEWAY_PAGE.format(status=status, reason=reason), content_type="text/html"
        )
    message = "Too many requests" if status == 429 else "Service unavailable"
    return ApiError(status, message, headers=decision.headers).response()


async def _serve(request: web.Request, handler: Handler, decision: FaultDecision) -> web.StreamResponse:
    if decision.delay:
        await asyncio.sleep(decision.delay)
    if decision.drop:
        raise _Dropped
    if decision.status is not None:
        if decision.queue_wait:
            await asyncio.sleep(decision.queue_wait)  # queued in vain: the 429 comes late
        return _injected(decision)
    faults: Faults = request.app[api.EMULATOR].faults
    config = faults.config
    if config.throttle_capacity is None:
        return await _handle(request, handler, decision)
    pool = request.app[POOL]
    if not await pool.acquire(config.throttle_capacity, config.throttle_wait):
        return _injected(faults.throttled())
    try:
        return await _handle(request, handler, decision)
    finally:
        pool.release()


async def _handle(request: web.Request, handler: Handler, decision: FaultDecision) -> web.StreamResponse:
    try:
        response = await handler(request)
    except ApiError as error:
        response = error.response()
    except web.HTTPException as error:  # routing: unknown path (404) or method (405)
        if error.status < 400:
            raise
        message = (
            "There is no such API path." if error.status == 404 else f"{request.method} is not allowed here."
        )
        response = ApiError(
            error.status, message, headers={k: v for k, v in error.headers.items() if k == "Allow"}
        ).response()
    if decision.drop_response:
        raise _Dropped
    return response


def _check_contract(
    emulator: Emulator, request: web.Request, operation: str, response: web.StreamResponse
) -> web.StreamResponse:
    checker = emulator.contract
    if checker is None:
        return response
    body = response.body if isinstance(response, web.Response) else None
    raw = body if isinstance(body, bytes) else b""
    problem = checker.problem(operation, response.status, response.content_type if raw else "", raw)
    if problem is None:
        return response
    violation = ContractViolation(
        operation, request.method, mask_secrets(request.path), response.status, problem
    )
    checker.record(violation)
    log.error(
        "contract violation: %s %s -> %s: %s",
        request.method,
        violation.path,
        response.status,
        violation.message,
    )
    return ApiError(500, f"The emulator broke the API contract: {violation.message}").response()


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    emulator = request.app[api.EMULATOR]
    operation = _operation(request)
    try:
        response = await _serve(request, handler, emulator.faults.decide(operation))
    except _Dropped:
        emulator.counters.record(operation, DROPPED)
        request.protocol.force_close()
        return web.Response(status=204)  # never sent: the transport is closed
    except ConnectionResetError:  # the client went away mid-request (killed): nobody to answer
        emulator.counters.record(operation, DROPPED)
        return web.Response(status=204)
    except Exception as error:
        log.exception("unhandled error in %s", operation)
        if emulator.contract is not None:
            problem = f"unhandled {type(error).__name__} in the emulator"
            path = mask_secrets(request.path)
            emulator.contract.record(ContractViolation(operation, request.method, path, 500, problem))
        response = ApiError(500, "Internal error in the emulator.").response()
    response = _check_contract(emulator, request, operation, response)
    emulator.counters.record(operation, response.status)
    if _compressible(emulator, request, response):
        response.enable_compression(web.ContentCoding.gzip)
    return response


def _compressible(emulator: Emulator, request: web.Request, response: web.StreamResponse) -> bool:
    """`compress` on, the client accepting gzip, and a body to compress (a 204 has none)."""
    return (
        emulator.faults.config.compress
        and "gzip" in request.headers.get("Accept-Encoding", "")
        and isinstance(response, web.Response)
        and bool(response.body)
        and response.status != 204
    )


def build_app(emulator: Emulator) -> web.Application:
    app = web.Application(middlewares=[api_middleware])
    app[api.EMULATOR] = emulator
    app[POOL] = RequestPool()
    api.add_routes(app)
    admin.add_routes(app)
    return app
