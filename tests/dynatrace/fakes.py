"""Test doubles for the client: a clock whose sleep only records, and a scripted MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from apitoken_operator.dynatrace.client import DynatraceClient, RetryEvent
from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.settings import DynatraceSettings, RetrySettings

ADMIN_SECRET = "dt0c01.ADMINADMINADMINADMINADMI.N" + "A" * 63
ADMIN = TokenSecret(ADMIN_SECRET)
OTHER_SECRET = "dt0c01.OTHER2OTHER2OTHER2OTHER2.R" + "B" * 63
OTHER = TokenSecret(OTHER_SECRET)
BASE_URL = "https://abc12345.live.dynatrace.com"
EPOCH = 1_750_000_000.0

Reply = httpx.Response | Exception
Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    """Monotonic and wall time in one, advanced only by `sleep`, which records every delay."""

    def __init__(self, start: float = EPOCH) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """A MockTransport handler answering from a list of replies (the last repeats); keeps the requests."""

    def __init__(self, *replies: Reply | Handler) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx.Response):
            return reply
        return reply(request)

    @property
    def calls(self) -> int:
        return len(self.requests)


def reply(status: int, body: Any = None, *, headers: dict[str, str] | None = None) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=headers)
    if isinstance(body, str | bytes):
        return httpx.Response(status, content=body, headers=headers)
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


def envelope(status: int, message: str, violations: list[dict[str, str]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message}
    if violations is not None:
        error["constraintViolations"] = violations
    return {"error": error}


def make_client(
    script: Script,
    clock: FakeClock,
    *,
    retry: RetrySettings | None = None,
    random: Callable[[], float] = lambda: 0.5,
    events: list[RetryEvent] | None = None,
    page_size: int = 1000,
) -> DynatraceClient:
    settings = DynatraceSettings(
        retry=retry or RetrySettings(max_attempts=5, initial_backoff=0.2, max_backoff=30.0, deadline=120.0),
        list_page_size=page_size,
    )
    return DynatraceClient(
        BASE_URL,
        token=ADMIN,
        settings=settings,
        transport=httpx.MockTransport(script),
        sleep=clock.sleep,
        random=random,
        monotonic=clock.monotonic,
        wall_clock=clock.wall,
        on_retry=events.append if events is not None else None,
    )
