"""The client over `httpx.MockTransport`: rare faults, retry decisions and the exact delays, no wall time."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from apitoken_operator.dynatrace import errors
from apitoken_operator.dynatrace.client import USER_AGENT, DynatraceClient, RetryEvent
from apitoken_operator.dynatrace.models import ApiTokenCreate, ApiTokenUpdate, ListField
from apitoken_operator.settings import DynatraceSettings, RetrySettings
from tests.dynatrace.fakes import (
    ADMIN,
    ADMIN_SECRET,
    BASE_URL,
    EPOCH,
    OTHER,
    OTHER_SECRET,
    FakeClock,
    Script,
    envelope,
    make_client,
    reply,
)

CREATED = {"id": "dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW", "token": "dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW." + "C" * 64}
TOKEN = {"id": "dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW", "name": "a", "enabled": True}
CREATE = ApiTokenCreate(name="team-a/ingest", scopes=["metrics.ingest"])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def request_error(kind: type[httpx.RequestError], message: str = "boom") -> httpx.RequestError:
    return kind(message, request=httpx.Request("GET", BASE_URL))


# --- the wire -------------------------------------------------------------------------------------


async def test_headers_and_urls(clock: FakeClock) -> None:
    script = Script(reply(200, TOKEN))
    async with make_client(script, clock) as client:
        await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    [request] = script.requests
    assert str(request.url) == f"{BASE_URL}/api/v2/apiTokens/dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW"
    assert request.headers["Authorization"] == f"Api-Token {ADMIN_SECRET}"
    assert request.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("dynatrace-apitoken-operator/")
    assert request.headers["Accept"] == "application/json"
    assert "api-token" not in str(request.url).lower()


async def test_create_body_and_answer(clock: FakeClock) -> None:
    script = Script(reply(201, {**CREATED, "expirationDate": "2030-01-01T00:00:00.000Z", "futureField": 1}))
    async with make_client(script, clock) as client:
        created = await client.create(
            ApiTokenCreate(name="n", scopes=["apiTokens.read", "some.futureScope"], expiration_date="now+14d")
        )
    assert json.loads(script.requests[0].content) == {
        "name": "n",
        "scopes": ["apiTokens.read", "some.futureScope"],
        "expirationDate": "now+14d",
    }
    assert created.token is not None
    assert created.token.reveal() == CREATED["token"]
    assert created.model_extra == {"futureField": 1}


async def test_unknown_fields_and_scopes_pass_through(clock: FakeClock) -> None:
    script = Script(reply(200, {**TOKEN, "scopes": ["brand.newScope"], "somethingNew": {"x": 1}}))
    async with make_client(script, clock) as client:
        token = await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    assert token.scopes == ["brand.newScope"]
    assert token.model_extra == {"somethingNew": {"x": 1}}


async def test_update_and_delete(clock: FakeClock) -> None:
    script = Script(reply(204), reply(204))
    async with make_client(script, clock) as client:
        await client.update("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW", ApiTokenUpdate(enabled=False))
        await client.delete(OTHER)  # a TokenSecret is addressed by its id, never by its secret
    assert [(request.method, request.url.path) for request in script.requests] == [
        ("PUT", "/api/v2/apiTokens/dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW"),
        ("DELETE", f"/api/v2/apiTokens/{OTHER.token_id}"),
    ]
    assert json.loads(script.requests[0].content) == {"enabled": False}


async def test_a_full_token_never_goes_into_a_path(clock: FakeClock) -> None:
    script = Script(reply(204))
    async with make_client(script, clock) as client:
        for call in (client.delete, client.get):
            with pytest.raises(errors.ConfigurationError) as caught:
                await call(OTHER_SECRET)
            assert OTHER_SECRET not in str(caught.value)
    assert script.calls == 0


async def test_lookup_sends_the_secret_in_the_body_only(clock: FakeClock) -> None:
    script = Script(reply(200, TOKEN))
    async with make_client(script, clock) as client:
        await client.lookup(OTHER)
    [request] = script.requests
    assert request.url.path == "/api/v2/apiTokens/lookup"
    assert json.loads(request.content) == {"token": OTHER_SECRET}
    assert OTHER_SECRET not in str(request.url)


async def test_a_malformed_secret_echoed_by_the_server_is_scrubbed(clock: FakeClock) -> None:
    from apitoken_operator.dynatrace.secrets import TokenSecret

    odd = TokenSecret("not-a-dynatrace-format-but-secret")
    script = Script(reply(400, envelope(400, "Token not-a-dynatrace-format-but-secret is malformed")))
    async with make_client(script, clock) as client:
        with pytest.raises(errors.InvalidRequest) as caught:
            await client.lookup(odd)
    assert "not-a-dynatrace-format-but-secret" not in str(caught.value)


# --- pagination -----------------------------------------------------------------------------------


async def test_pagination_continuations_carry_only_the_key(clock: FakeClock) -> None:
    pages = [
        {"apiTokens": [{"id": "a"}, {"id": "b"}], "nextPageKey": "k1", "pageSize": 100, "totalCount": 5},
        {"apiTokens": [{"id": "c"}, {"id": "d"}], "nextPageKey": "k2", "pageSize": 100, "totalCount": 5},
        {"apiTokens": [{"id": "e"}], "nextPageKey": None, "pageSize": 100, "totalCount": 5},
    ]
    script = Script(*(reply(200, page) for page in pages))
    async with make_client(script, clock) as client:
        ids = [
            token.id
            async for token in client.list_tokens(
                fields=[ListField.SCOPES, ListField.EXPIRATION_DATE],
                selector='owner("x")',
                sort="name",
                page_size=100,
            )
        ]
    assert ids == ["a", "b", "c", "d", "e"]
    first, second, third = (request.url for request in script.requests)
    assert dict(first.params) == {
        "pageSize": "100",
        "fields": "+scopes,+expirationDate",
        "apiTokenSelector": 'owner("x")',
        "sort": "name",
    }
    assert b"fields=%2Bscopes%2C%2BexpirationDate" in first.query
    assert dict(second.params) == {"nextPageKey": "k1"}
    assert dict(third.params) == {"nextPageKey": "k2"}


async def test_list_page_refuses_filters_with_a_key(clock: FakeClock) -> None:
    async with make_client(Script(reply(200, {"totalCount": 0})), clock) as client:
        with pytest.raises(errors.ConfigurationError, match="only the page key"):
            await client.list_page(page_key="k", sort="name")


async def test_a_repeated_page_key_stops_the_listing(clock: FakeClock) -> None:
    page = {"apiTokens": [{"id": "a"}], "nextPageKey": "same", "totalCount": 9}
    script = Script(reply(200, page))
    async with make_client(script, clock) as client:
        with pytest.raises(errors.UnexpectedResponse, match="repeated a page key"):
            _ = [token async for token in client.list_tokens()]
    assert script.calls == 2


async def test_default_page_size_comes_from_settings(clock: FakeClock) -> None:
    script = Script(reply(200, {"apiTokens": [], "totalCount": 0}))
    async with make_client(script, clock, page_size=500) as client:
        page = await client.list_page()
    assert page.total_count == 0
    assert script.requests[0].url.params["pageSize"] == "500"


# --- error bodies ---------------------------------------------------------------------------------


async def test_html_error_body_from_a_proxy(clock: FakeClock) -> None:
    html = "<html><head><title>403 Forbidden</title></head><body><center>nginx</center></body></html>"
    script = Script(reply(403, html, headers={"Content-Type": "text/html"}))
    async with make_client(script, clock) as client:
        with pytest.raises(errors.Forbidden) as caught:
            await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    assert caught.value.message == "403 Forbidden"
    assert caught.value.missing_scope is None
    assert script.calls == 1


async def test_array_of_envelopes(clock: FakeClock) -> None:
    body = [
        envelope(400, "Constraints violated.", [{"path": "name", "message": "must not be blank"}]),
        envelope(400, "Scope unknown.", [{"path": "scopes[0]", "message": "is not a scope"}]),
    ]
    script = Script(reply(400, body))
    async with make_client(script, clock) as client:
        with pytest.raises(errors.InvalidRequest) as caught:
            await client.create(CREATE)
    assert caught.value.message == "Constraints violated.; Scope unknown."
    assert [violation.path for violation in caught.value.constraint_violations] == ["name", "scopes[0]"]


async def test_a_success_body_that_is_not_json(clock: FakeClock) -> None:
    script = Script(reply(200, "<html>login page</html>"))
    async with make_client(script, clock) as client:
        with pytest.raises(errors.UnexpectedResponse, match="not a valid ApiToken"):
            await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")


async def test_redirects_are_not_followed(clock: FakeClock) -> None:
    script = Script(reply(302, "", headers={"Location": "https://sso.example.com/login"}))
    async with make_client(script, clock) as client:
        with pytest.raises(errors.UnexpectedResponse) as caught:
            await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    assert caught.value.status == 302
    assert script.calls == 1


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, errors.InvalidRequest),
        (401, errors.Unauthorized),
        (403, errors.Forbidden),
        (404, errors.NotFound),
        (500, errors.ServiceUnavailable),
    ],
)
async def test_final_errors_are_not_retried(
    clock: FakeClock, status: int, kind: type[errors.DynatraceApiError]
) -> None:
    script = Script(reply(status, envelope(status, "no")))
    async with make_client(script, clock) as client:
        with pytest.raises(kind):
            await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    assert script.calls == 1
    assert clock.sleeps == []


async def test_delete_of_a_missing_token_is_not_found(clock: FakeClock) -> None:
    script = Script(reply(404, envelope(404, "Token not found")))
    async with make_client(script, clock) as client:
        with pytest.raises(errors.NotFound, match="Token not found"):
            await client.delete("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")


# --- retries and their delays ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_retried_statuses(clock: FakeClock, status: int) -> None:
    script = Script(reply(status, envelope(status, "busy")), reply(200, TOKEN))
    async with make_client(script, clock) as client:
        token = await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    assert token.name == "a"
    assert script.calls == 2
    assert clock.sleeps == [pytest.approx(0.1)]  # 0.5 * min(30, 0.2 * 2**0)


@pytest.mark.parametrize(
    "fault",
    [
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.PoolTimeout,
        httpx.ReadTimeout,
        httpx.ReadError,
        httpx.RemoteProtocolError,
        httpx.WriteError,
    ],
)
async def test_transport_faults_are_retried_for_reads(
    clock: FakeClock, fault: type[httpx.RequestError]
) -> None:
    script = Script(request_error(fault), reply(200, TOKEN))
    async with make_client(script, clock) as client:
        await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    assert script.calls == 2


async def test_unsupported_protocol_is_not_retried(clock: FakeClock) -> None:
    script = Script(request_error(httpx.UnsupportedProtocol))
    async with make_client(script, clock) as client:
        with pytest.raises(errors.DynatraceTransportError) as caught:
            await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    assert caught.value.request_sent is False
    assert isinstance(caught.value.__cause__, httpx.UnsupportedProtocol)
    assert script.calls == 1


async def test_retry_after_seconds_is_honoured(clock: FakeClock) -> None:
    events: list[RetryEvent] = []
    script = Script(reply(429, envelope(429, "slow down"), headers={"Retry-After": "3"}), reply(200, TOKEN))
    async with make_client(script, clock, random=lambda: 0.0, events=events) as client:
        await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    assert clock.sleeps == [3.0]
    [event] = events
    assert (event.operation, event.attempt, event.delay, event.hint) == (
        "GET /apiTokens/dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW",
        1,
        3.0,
        3.0,
    )
    assert isinstance(event.error, errors.Throttled)
    assert event.error.retry_after == 3.0


async def test_retry_after_http_date(clock: FakeClock) -> None:
    when = format_datetime(datetime.fromtimestamp(EPOCH + 7, tz=UTC), usegmt=True)
    script = Script(reply(503, "", headers={"Retry-After": when}), reply(200, TOKEN))
    async with make_client(script, clock, random=lambda: 0.0) as client:
        await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    assert clock.sleeps == [pytest.approx(7.0)]


@pytest.mark.parametrize(
    "value",
    [str(int((EPOCH + 4) * 1_000_000)), str(int((EPOCH + 4) * 1000)), str(int(EPOCH + 4)), "4"],
    ids=["epoch microseconds", "epoch milliseconds", "epoch seconds", "delta seconds"],
)
async def test_rate_limit_reset_forms(clock: FakeClock, value: str) -> None:
    script = Script(reply(429, "", headers={"X-RateLimit-Reset": value}), reply(200, TOKEN))
    async with make_client(script, clock, random=lambda: 0.0) as client:
        await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    assert clock.sleeps == [pytest.approx(4.0)]


async def test_jittered_exponential_delays_stay_in_bounds(clock: FakeClock) -> None:
    draws = iter([0.0, 0.999, 0.5, 0.25, 0.999, 0.999, 0.999])
    retry = RetrySettings(max_attempts=8, initial_backoff=0.5, max_backoff=4.0, deadline=1000.0)
    script = Script(reply(503, ""))
    async with make_client(script, clock, retry=retry, random=lambda: next(draws)) as client:
        with pytest.raises(errors.ServiceUnavailable) as caught:
            await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert script.calls == 8
    assert caught.value.attempts == 8
    assert len(clock.sleeps) == 7
    for delay, ceiling in zip(clock.sleeps, ceilings, strict=True):
        assert 0.0 <= delay <= ceiling
    assert clock.sleeps == pytest.approx([0.0, 0.999, 1.0, 1.0, 3.996, 3.996, 3.996])
    assert any("max_attempts" in note for note in caught.value.__notes__)


async def test_real_random_jitter_stays_in_bounds() -> None:
    clock = FakeClock()
    retry = RetrySettings(max_attempts=6, initial_backoff=0.2, max_backoff=1.0, deadline=1000.0)
    script = Script(reply(502, ""))
    client = DynatraceClient(
        BASE_URL,
        token=ADMIN,
        settings=DynatraceSettings(retry=retry),
        transport=httpx.MockTransport(script),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        wall_clock=clock.wall,
    )
    async with client:
        with pytest.raises(errors.ServiceUnavailable):
            await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    for retry_number, delay in enumerate(clock.sleeps, start=1):
        assert 0.0 <= delay <= min(1.0, 0.2 * 2 ** (retry_number - 1))


async def test_a_long_retry_after_is_capped_by_max_backoff(clock: FakeClock) -> None:
    retry = RetrySettings(max_attempts=3, initial_backoff=0.2, max_backoff=5.0, deadline=100.0)
    script = Script(reply(429, "", headers={"Retry-After": "3600"}), reply(200, TOKEN))
    async with make_client(script, clock, retry=retry) as client:
        await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    assert clock.sleeps == [5.0]


async def test_deadline_stops_a_wait_that_would_pass_it(clock: FakeClock) -> None:
    retry = RetrySettings(max_attempts=100, initial_backoff=0.2, max_backoff=30.0, deadline=25.0)
    script = Script(reply(429, envelope(429, "throttled"), headers={"Retry-After": "10"}))
    async with make_client(script, clock, retry=retry, random=lambda: 0.0) as client:
        with pytest.raises(errors.Throttled) as caught:
            await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    # waits of 10 s at t=0 and t=10; a third at t=20 would end at 30 > 25.
    assert clock.sleeps == [10.0, 10.0]
    assert script.calls == 3
    assert caught.value.attempts == 3
    assert caught.value.retry_after == 10.0
    assert any("deadline" in note for note in caught.value.__notes__)


async def test_attempt_timeouts_shrink_near_the_deadline(clock: FakeClock) -> None:
    retry = RetrySettings(max_attempts=5, initial_backoff=0.2, max_backoff=30.0, deadline=12.0)
    script = Script(reply(503, "", headers={"Retry-After": "10"}), reply(200, TOKEN))
    async with make_client(script, clock, retry=retry, random=lambda: 0.0) as client:
        await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")
    first, second = (request.extensions["timeout"] for request in script.requests)
    assert first["read"] == 12.0  # min(read_timeout 30, 12 s left)
    assert second["read"] == pytest.approx(2.0)
    assert second["connect"] == pytest.approx(2.0)


# --- creates are never repeated once they may have arrived ----------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        request_error(httpx.ReadTimeout, "timed out"),
        request_error(httpx.ReadError, "connection reset"),
        request_error(httpx.RemoteProtocolError, "Server disconnected without sending a response."),
        request_error(httpx.WriteError, "broken pipe"),
        request_error(httpx.WriteTimeout),
        reply(500, envelope(500, "internal")),
        reply(502, "<html><title>502 Bad Gateway</title></html>"),
        reply(503, envelope(503, "unavailable"), headers={"Retry-After": "1"}),
        reply(504, "gateway timeout"),
        reply(201, "not json"),
        reply(201, {"id": "dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW"}),
    ],
    ids=[
        "read timeout",
        "read error",
        "dropped",
        "write error",
        "write timeout",
        "500",
        "502",
        "503",
        "504",
        "201 not json",
        "201 without token",
    ],
)
async def test_create_outcome_unknown(clock: FakeClock, fault: httpx.Response | Exception) -> None:
    script = Script(fault, reply(201, CREATED))
    async with make_client(script, clock) as client:
        with pytest.raises(errors.CreateOutcomeUnknown) as caught:
            await client.create(CREATE)
    assert script.calls == 1
    assert clock.sleeps == []
    assert caught.value.request is CREATE
    assert caught.value.name == "team-a/ingest"
    assert "team-a/ingest" in str(caught.value)


@pytest.mark.parametrize(
    "fault",
    [
        request_error(httpx.ConnectError, "[Errno 111] Connection refused"),
        request_error(httpx.ConnectTimeout),
        request_error(httpx.PoolTimeout),
        reply(429, envelope(429, "throttled"), headers={"Retry-After": "2"}),
    ],
    ids=["refused", "connect timeout", "pool timeout", "429"],
)
async def test_create_is_retried_when_it_cannot_have_arrived(
    clock: FakeClock, fault: httpx.Response | Exception
) -> None:
    script = Script(fault, fault, reply(201, CREATED))
    async with make_client(script, clock) as client:
        created = await client.create(CREATE)
    assert created.id == CREATED["id"]
    assert script.calls == 3
    assert len(clock.sleeps) == 2


async def test_create_that_never_connects_is_a_plain_transport_error(clock: FakeClock) -> None:
    retry = RetrySettings(max_attempts=3, initial_backoff=0.2, max_backoff=30.0, deadline=100.0)
    script = Script(request_error(httpx.ConnectError, "[Errno 111] Connection refused"))
    async with make_client(script, clock, retry=retry) as client:
        with pytest.raises(errors.DynatraceTransportError) as caught:
            await client.create(CREATE)
    assert caught.value.request_sent is False
    assert caught.value.attempts == 3
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert script.calls == 3


async def test_a_create_waiting_for_a_request_slot_is_not_sent_after_its_deadline() -> None:
    """Another replica settles an intent once the create's deadline has passed: the create must not go
    out later than that, however long the connection's queue of requests."""
    script = Script(reply(201, CREATED))
    settings = DynatraceSettings(
        max_concurrent_calls=1,
        retry=RetrySettings(max_attempts=3, initial_backoff=0.01, max_backoff=0.01, deadline=0.3),
    )
    async with DynatraceClient(
        BASE_URL, token=ADMIN, settings=settings, transport=httpx.MockTransport(script)
    ) as client:
        await client._in_flight.acquire()  # the only slot, held by other calls for a second
        asyncio.get_running_loop().call_later(1.0, client._in_flight.release)
        with pytest.raises(errors.DynatraceError) as caught:
            await client.create(CREATE)
        await asyncio.sleep(1.1)
    assert isinstance(caught.value, errors.DynatraceTransportError)
    assert caught.value.request_sent is False, "a create that was never sent is not an unknown outcome"
    assert script.requests == [], "the create went out after its deadline"


async def test_an_answer_that_trickles_is_cut_at_the_calls_deadline() -> None:
    """Each byte arrives within the read timeout, but the whole answer would take longer than the call
    may: the call ends at its deadline instead of holding its caller (and a request slot) for ever."""

    async def trickle() -> Any:
        for _ in range(1000):
            await asyncio.sleep(0.05)
            yield b" "

    script = Script(lambda request: httpx.Response(200, content=trickle()))
    settings = DynatraceSettings(retry=RetrySettings(max_attempts=1, deadline=0.5))
    async with DynatraceClient(
        BASE_URL, token=ADMIN, settings=settings, transport=httpx.MockTransport(script)
    ) as client:
        with pytest.raises(errors.DynatraceTransportError, match="deadline passed while the answer"):
            await client.list_page()  # not after the 50 s the answer would take


async def test_an_answer_larger_than_the_cap_is_not_read_further(clock: FakeClock) -> None:
    async def endless() -> Any:
        while True:
            yield b"x" * 65536

    script = Script(lambda request: httpx.Response(200, content=endless()))
    settings = DynatraceSettings(max_response_bytes=1_000_000, retry=RetrySettings(max_attempts=1))
    async with DynatraceClient(
        BASE_URL, token=ADMIN, settings=settings, transport=httpx.MockTransport(script)
    ) as client:
        with pytest.raises(errors.DynatraceTransportError, match="1,000,000 bytes"):
            await client.list_page()


async def test_create_after_retried_429_then_timeout_is_unknown(clock: FakeClock) -> None:
    script = Script(reply(429, ""), request_error(httpx.ReadTimeout), reply(201, CREATED))
    async with make_client(script, clock) as client:
        with pytest.raises(errors.CreateOutcomeUnknown) as caught:
            await client.create(CREATE)
    assert script.calls == 2
    assert caught.value.attempts == 2
    assert isinstance(caught.value.__cause__, errors.DynatraceTransportError)
    assert isinstance(caught.value.__cause__.__cause__, httpx.ReadTimeout)


async def test_create_rejected_is_not_unknown(clock: FakeClock) -> None:
    script = Script(
        reply(400, envelope(400, "Constraints violated.", [{"path": "scopes", "message": "empty"}]))
    )
    async with make_client(script, clock) as client:
        with pytest.raises(errors.InvalidRequest):
            await client.create(CREATE)
    assert script.calls == 1


# --- secrets stay secret --------------------------------------------------------------------------


async def test_repr_shows_the_id_only(clock: FakeClock) -> None:
    async with make_client(Script(reply(204)), clock) as client:
        assert repr(client) == f"DynatraceClient('{BASE_URL}/api/v2', token='{ADMIN.token_id}')"
        assert ADMIN_SECRET not in repr(client.__dict__)
        assert client.token_id == ADMIN.token_id


async def test_no_secret_in_logs_or_errors(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo = envelope(503, f"token {ADMIN_SECRET} and {OTHER_SECRET} are busy")
    script = Script(reply(503, echo), reply(401, echo), reply(201, CREATED))
    async with make_client(script, clock) as client:
        with pytest.raises(errors.Unauthorized) as caught:
            await client.lookup(OTHER)
        created = await client.create(CREATE)
    everything = caplog.text + str(caught.value) + repr(caught.value) + repr(created) + str(created.wire())
    for secret in (ADMIN_SECRET, OTHER_SECRET, CREATED["token"]):
        assert secret not in everything
    assert "retrying" in caplog.text


async def test_token_must_be_a_token_secret() -> None:
    with pytest.raises(errors.ConfigurationError):
        DynatraceClient(BASE_URL, token=ADMIN_SECRET)  # type: ignore[arg-type]


async def test_bad_base_url_is_a_configuration_error() -> None:
    with pytest.raises(errors.ConfigurationError):
        DynatraceClient("abc12345.live.dynatrace.com", token=ADMIN)


async def test_aclose_closes_the_pool(clock: FakeClock) -> None:
    client = make_client(Script(reply(200, TOKEN)), clock)
    await client.aclose()
    with pytest.raises(RuntimeError):
        await client.get("dt0c01.NEWNEWNEWNEWNEWNEWNEWNEW")


async def test_a_walk_that_pages_far_past_its_count_is_cut_off(clock: FakeClock) -> None:
    """A server (hostile, or broken) that answers every page with another page key would be walked for
    ever: the first page's totalCount bounds the walk, with room for tokens created meanwhile."""
    counter = iter(range(100_000))
    seen: list[str] = []

    def endless(request: httpx.Request) -> httpx.Response:
        tokens = [{"id": f"dt0c01.{next(counter):024d}", "name": "x"} for _ in range(100)]
        key = f"page-{len(seen)}-{next(counter)}"  # a new key every time: no loop to notice
        return reply(200, {"totalCount": 300, "pageSize": 100, "apiTokens": tokens, "nextPageKey": key})

    async def walk(client: DynatraceClient) -> None:
        async for token in client.list_tokens():
            seen.append(token.id or "")

    async with make_client(Script(endless), clock) as client:
        with pytest.raises(errors.UnexpectedResponse, match="kept paging past the 300 tokens"):
            await walk(client)
    assert len(seen) <= 300 + 1000
