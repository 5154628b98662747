"""The observer: a late listing never undoes the operator's own writes, and absence is only a hint.

A scripted Dynatrace (httpx.MockTransport with an async handler) holds a list call open until the test
lets it answer, so writes can land in the middle of a listing deterministically, with no wall time.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from apitoken_operator.controller.observer import Observer
from apitoken_operator.dynatrace import errors
from apitoken_operator.dynatrace.client import DynatraceClient
from apitoken_operator.dynatrace.dates import format_date
from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.settings import DynatraceSettings
from tests.dynatrace.fakes import ADMIN, BASE_URL, OTHER, OTHER_SECRET
from tests.unit.test_status import boundary

A, B, C = (f"dt0c01.{letter * 24}" for letter in "ABC")


class Environment:
    """Tokens by id; list calls wait for `release` when `hold` is set; every request is counted."""

    def __init__(self, *tokens: dict[str, Any]) -> None:
        self.tokens = {t["id"]: t for t in tokens}
        self.hold = False
        self.listing = asyncio.Event()
        self.release = asyncio.Event()
        self.calls: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v2/apiTokens")
        self.calls.append(f"{request.method} {path or '/'}")
        if request.method == "GET" and not path:
            snapshot = list(self.tokens.values())  # read first, answer later: a listing describes the past
            if self.hold:
                self.listing.set()
                await self.release.wait()
            body = {"apiTokens": snapshot, "totalCount": len(snapshot), "pageSize": 10000}
            return httpx.Response(200, content=json.dumps(body).encode())
        if request.method == "GET":
            token = self.tokens.get(path.strip("/"))
            if token is None:
                return httpx.Response(404, content=b'{"error": {"code": 404, "message": "not found"}}')
            return httpx.Response(200, content=json.dumps(token).encode())
        if request.method == "POST" and path == "/lookup":
            secret = json.loads(request.content)["token"]
            token = self.tokens.get(secret.rsplit(".", 1)[0])
            if token is None:
                return httpx.Response(404, content=b'{"error": {"code": 404, "message": "not found"}}')
            return httpx.Response(200, content=json.dumps(token).encode())
        raise AssertionError(f"unexpected {request.method} {request.url}")


def token(token_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": token_id, "name": "web", "enabled": True, "scopes": ["metrics.ingest"], **fields}


def observer_of(environment: Environment, **options: Any) -> Observer:
    client = DynatraceClient(
        BASE_URL, token=ADMIN, settings=DynatraceSettings(), transport=httpx.MockTransport(environment)
    )
    return Observer(client, max_age=3600, **options)


async def listing_under_way(environment: Environment, observer: Observer) -> asyncio.Task[None]:
    environment.hold = True
    environment.listing.clear()
    environment.release.clear()
    task = asyncio.create_task(observer.refresh())
    await environment.listing.wait()
    return task


async def test_a_token_made_during_a_listing_stays_in_the_view() -> None:
    environment = Environment(token(A))
    observer = observer_of(environment)
    changes: list[set[str]] = []
    observer.on_change = changes.append
    await observer.refresh()
    listing = await listing_under_way(environment, observer)
    environment.tokens[B] = token(B)
    observer.remember(ApiToken.model_validate(token(B)))  # the operator's create, after the snapshot
    environment.release.set()
    await listing
    assert set((await observer.tokens()).keys()) == {A, B}
    assert changes == []  # nothing vanished: nobody is told to replace B


async def test_a_token_deleted_during_a_listing_stays_gone() -> None:
    environment = Environment(token(A), token(B))
    observer = observer_of(environment)
    await observer.refresh()
    listing = await listing_under_way(environment, observer)
    del environment.tokens[B]
    observer.forget(B)
    environment.release.set()
    await listing
    assert await observer.token(B) is None
    assert await observer.confirm(B) is None
    assert "GET /" + B not in environment.calls  # the operator saw it go: no GET needed


async def test_a_listing_begun_after_a_write_has_the_last_word() -> None:
    environment = Environment(token(A))
    observer = observer_of(environment)
    await observer.refresh()
    observer.remember(ApiToken.model_validate(token(B)))  # made, then deleted outside before the listing
    await observer.refresh()
    assert set((await observer.tokens()).keys()) == {A}


async def test_absence_from_a_listing_is_confirmed_by_id() -> None:
    environment = Environment(token(A), token(B))
    observer = observer_of(environment)
    await observer.refresh()
    hidden = environment.tokens.pop(B)  # a skipped page: B is live but the listing does not show it
    await observer.refresh()
    environment.tokens[B] = hidden
    assert await observer.token(B) is None
    confirmed = await observer.confirm(B)
    assert confirmed is not None and confirmed.id == B
    assert await observer.token(B) is not None  # kept: the GET is newer than the listing
    assert await observer.confirm(C) is None  # really gone: a 404
    assert environment.calls.count(f"GET /{C}") == 1
    assert await observer.confirm(C) is None
    assert environment.calls.count(f"GET /{C}") == 1  # known gone now


async def test_a_lookup_proves_a_secret_only_for_its_own_token() -> None:
    other_id = OTHER_SECRET.rsplit(".", 1)[0]
    environment = Environment(token(A), token(other_id))
    observer = observer_of(environment)
    assert await observer.proves(OTHER, token_id=other_id)
    assert not await observer.proves(OTHER, token_id=A)  # a value naming another id proves nothing
    del environment.tokens[other_id]
    assert not await observer.proves(OTHER, token_id=other_id)  # no live token has that secret


async def test_use_alone_counts_as_a_change_once_per_interval() -> None:
    turn = boundary(3600.0)  # where token A's last-use period turns (periods are staggered per token)
    environment = Environment(token(A, lastUsedDate=format_date(turn - timedelta(minutes=50))))
    observer = observer_of(environment, last_used_interval=3600.0)
    changes: list[set[str]] = []
    observer.on_change = changes.append
    await observer.refresh()
    for minutes in (-40, -1):
        used = format_date(turn + timedelta(minutes=minutes))
        environment.tokens[A] = token(A, lastUsedDate=used, lastUsedIpAddress="10.0.0.9")
        await observer.refresh()
    assert changes == []
    environment.tokens[A] = token(A, lastUsedDate=format_date(turn + timedelta(seconds=1)))
    await observer.refresh()
    assert changes == [{A}]
    environment.tokens[A] = token(A, lastUsedDate=format_date(turn + timedelta(seconds=1)), enabled=False)
    await observer.refresh()
    assert changes == [{A}, {A}]  # a real change counts at once


async def test_a_failed_listing_is_not_repeated_at_once() -> None:
    """A connection whose listing failed (a hang, a refusal, endless pages) gives every caller that
    error for a while, instead of one more listing per reconcile."""
    environment = Environment(token(A))
    now = [1000.0]
    client = DynatraceClient(
        BASE_URL, token=ADMIN, settings=DynatraceSettings(), transport=httpx.MockTransport(environment)
    )
    observer = Observer(client, max_age=0, monotonic=lambda: now[0])

    async def refused(request: httpx.Request) -> httpx.Response:
        environment.calls.append("GET /")
        return httpx.Response(
            401, content=b'{"error": {"code": 401, "message": "Token Authentication failed"}}'
        )

    client._http._transport = httpx.MockTransport(refused)
    for _ in range(3):
        with pytest.raises(errors.Unauthorized):
            await observer.refresh()
    assert environment.calls == ["GET /"]
    now[0] += 11
    client._http._transport = httpx.MockTransport(environment)
    await observer.refresh()
    assert set((await observer.tokens()).keys()) == {A}


async def test_close_stops_a_listing_under_way() -> None:
    """At shutdown the connection's client is closed; a listing left running would go on with it and fail
    after the operator said it stopped (a traceback at every SIGTERM during a listing)."""
    environment = Environment(token(A))
    observer = observer_of(environment)
    caller = await listing_under_way(environment, observer)
    await observer.close()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):  # without the cancel, the caller waits for the held listing
            await caller
    environment.release.set()
    await asyncio.sleep(0)
    assert not observer.fresh()  # the listing never finished
    assert [task for task in asyncio.all_tasks() if task is not asyncio.current_task()] == []
