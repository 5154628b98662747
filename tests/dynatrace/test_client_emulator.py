"""The client against the running emulator over real HTTP: typed errors, retries, pagination, lost creates.

Delays are observed through an injected sleep (which also switches faults off at the right moment), and
calls through the emulator's counters; nothing here asserts on wall time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from apitoken_operator.dynatrace import errors
from apitoken_operator.dynatrace.client import DynatraceClient, RetryEvent
from apitoken_operator.dynatrace.models import ApiTokenCreate, ApiTokenUpdate, ListField
from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.dynatrace.selector import Selector
from apitoken_operator.settings import DynatraceSettings, RetrySettings

ID_OF_NOTHING = "dt0c01.NOTHINGNOTHINGNOTHINGNOT"
FAST_RETRY = RetrySettings(max_attempts=4, initial_backoff=0.01, max_backoff=5.0, deadline=60.0)


class Sleeper:
    """An injected sleep: records each delay, waits not at all, and runs `then` before the n-th return."""

    def __init__(self, *, after: int = 1, then: Callable[[], Any] | None = None) -> None:
        self.delays: list[float] = []
        self.after = after
        self.then = then

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.then is not None and len(self.delays) == self.after:
            self.then()
        await asyncio.sleep(0)


def client_for(
    emulator: Any,
    *,
    token: TokenSecret | None = None,
    sleep: Sleeper | None = None,
    retry: RetrySettings = FAST_RETRY,
    random: Callable[[], float] = lambda: 0.0,
    events: list[RetryEvent] | None = None,
    read_timeout: float = 10.0,
    page_size: int = 1000,
) -> DynatraceClient:
    return DynatraceClient(
        emulator.base_url,
        token=token or emulator.admin_token,
        settings=DynatraceSettings(read_timeout=read_timeout, list_page_size=page_size, retry=retry),
        sleep=sleep or Sleeper(),
        random=random,
        on_retry=events.append if events is not None else None,
    )


async def test_round_trip(emulator: Any) -> None:
    async with client_for(emulator) as client:
        created = await client.create(
            ApiTokenCreate(name="round-trip", scopes=["metrics.ingest"], expiration_date="now+14d")
        )
        assert created.id is not None
        assert created.token is not None
        assert created.token.token_id == created.id
        assert created.expiration_date is not None

        token = await client.get(created.id)
        assert (token.name, token.enabled, token.scopes) == ("round-trip", True, ["metrics.ingest"])

        await client.update(
            created.id, ApiTokenUpdate(enabled=False, scopes=["metrics.ingest", "logs.ingest"])
        )
        looked_up = await client.lookup(created.token)
        assert looked_up.id == created.id
        assert looked_up.enabled is False
        assert sorted(looked_up.scopes or []) == ["logs.ingest", "metrics.ingest"]

        await client.delete(created.id)
        with pytest.raises(errors.NotFound):
            await client.get(created.id)
    assert emulator.contract_violations == []


async def test_invalid_request_carries_violations(emulator: Any) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(errors.InvalidRequest) as caught:
            await client.create(ApiTokenCreate(name=" ", scopes=["no.suchScope"]))
    paths = {violation.path for violation in caught.value.constraint_violations}
    assert "name" in paths
    assert any(path and path.startswith("scopes") for path in paths)
    assert caught.value.status == 400
    assert emulator.counters.count("create", 400) == 1


async def test_unknown_token_is_unauthorized(emulator: Any) -> None:
    stranger = TokenSecret("dt0c01.STRANGERSTRANGERSTRANGER." + "S" * 64)
    async with client_for(emulator, token=stranger) as client:
        with pytest.raises(errors.Unauthorized) as caught:
            await client.list_page()
    assert caught.value.status == 401
    assert stranger.reveal() not in str(caught.value)
    assert emulator.counters.count("list", 401) == 1


async def test_disabled_token_is_unauthorized(emulator: Any) -> None:
    disabled = emulator.create_token("disabled", enabled=False)
    async with client_for(emulator, token=disabled) as client:
        with pytest.raises(errors.Unauthorized, match="disabled"):
            await client.get(ID_OF_NOTHING)


async def test_forbidden_names_the_missing_scope(emulator: Any) -> None:
    reader = emulator.create_token("reader", scopes=["apiTokens.read"])
    async with client_for(emulator, token=reader) as client:
        with pytest.raises(errors.Forbidden) as caught:
            await client.create(ApiTokenCreate(name="x", scopes=["metrics.ingest"]))
        assert caught.value.missing_scope == "apiTokens.write"
        writer_only = emulator.create_token("writer", scopes=["apiTokens.write"])
    async with client_for(emulator, token=writer_only) as client:
        with pytest.raises(errors.Forbidden) as caught:
            await client.list_page()
        assert caught.value.missing_scope == "apiTokens.read"
    assert emulator.counters.count("create", 403) == 1


async def test_not_found(emulator: Any) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(errors.NotFound):
            await client.get(ID_OF_NOTHING)
        with pytest.raises(errors.NotFound):
            await client.delete(ID_OF_NOTHING)
        with pytest.raises(errors.NotFound):
            await client.update(ID_OF_NOTHING, ApiTokenUpdate(name="x"))
        with pytest.raises(errors.NotFound):
            await client.lookup(TokenSecret("dt0c01.NOTHINGNOTHINGNOTHINGNOT." + "N" * 64))
    assert emulator.counters.count(outcome=404) == 4


async def test_deleting_the_calling_token_is_refused(emulator: Any) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(errors.InvalidRequest, match="authentication"):
            await client.delete(emulator.admin_token)


async def test_throttling_honours_retry_after(emulator: Any) -> None:
    emulator.faults.update(rate_limit_ratio=1.0, retry_after=2.0, operations=["get"])
    sleeper = Sleeper(after=2, then=emulator.faults.reset)
    events: list[RetryEvent] = []
    target = emulator.create_token("target")
    async with client_for(emulator, sleep=sleeper, events=events) as client:
        token = await client.get(target.token_id)
    assert token.name == "target"
    assert emulator.counters.count("get", 429) == 2
    assert emulator.counters.count("get", 200) == 1
    # random() == 0: the waits are exactly the server's Retry-After.
    assert sleeper.delays == [2.0, 2.0]
    assert [event.hint for event in events] == [2.0, 2.0]
    assert all(isinstance(event.error, errors.Throttled) for event in events)


async def test_throttling_honours_rate_limit_reset(emulator: Any) -> None:
    emulator.faults.update(rate_limit_ratio=1.0, retry_after=None, rate_limit_reset=True, operations=["list"])
    sleeper = Sleeper(then=emulator.faults.reset)
    events: list[RetryEvent] = []
    async with client_for(emulator, sleep=sleeper, events=events) as client:
        await client.list_page()
    [event] = events
    # The emulator sends the reset as epoch microseconds one second ahead of its wall clock.
    assert event.hint is not None
    assert 0.0 < event.hint <= 1.0
    assert sleeper.delays == [event.hint]
    assert emulator.counters.count("list", 429) == 1


async def test_throttling_until_max_attempts(emulator: Any) -> None:
    emulator.faults.update(rate_limit_ratio=1.0, retry_after=1.0, operations=["list"])
    sleeper = Sleeper()
    async with client_for(emulator, sleep=sleeper, random=lambda: 0.5) as client:
        with pytest.raises(errors.Throttled) as caught:
            await client.list_page()
    assert caught.value.attempts == FAST_RETRY.max_attempts
    assert caught.value.retry_after == 1.0
    assert emulator.counters.count("list", 429) == FAST_RETRY.max_attempts
    # hint 1 s plus half of the exponential ceiling 0.01 * 2**(n-1)
    assert sleeper.delays == pytest.approx([1.005, 1.01, 1.02])


async def test_server_errors_and_dropped_connections_are_retried_for_reads(emulator: Any) -> None:
    target = emulator.create_token("target")
    for fault in ({"server_error_ratio": 1.0}, {"drop_ratio": 1.0}, {"outage": "unavailable"}):
        emulator.counters.reset()
        emulator.faults.update(**fault)
        sleeper = Sleeper(then=emulator.faults.reset)
        async with client_for(emulator, sleep=sleeper) as client:
            token = await client.get(target.token_id)
        assert token.name == "target", fault
        assert emulator.counters.count("get") == 2, fault
        assert len(sleeper.delays) == 1, fault


async def test_non_json_error_body(emulator: Any) -> None:
    emulator.faults.update(server_error_ratio=1.0, server_error_html=True, server_error_statuses=[502])
    retry = RetrySettings(max_attempts=2, initial_backoff=0.01, max_backoff=1.0, deadline=10.0)
    async with client_for(emulator, retry=retry) as client:
        with pytest.raises(errors.ServiceUnavailable) as caught:
            await client.list_page()
        assert caught.value.status == 502
        assert caught.value.message == "502"
        assert caught.value.attempts == 2
        with pytest.raises(errors.CreateOutcomeUnknown) as unknown:
            await client.create(ApiTokenCreate(name="behind-a-gateway", scopes=["metrics.ingest"]))
        assert isinstance(unknown.value.__cause__, errors.ServiceUnavailable)
    assert emulator.counters.count("list", 502) == 2
    assert emulator.counters.count("create", 502) == 1


async def test_dropped_create_response_is_outcome_unknown(emulator: Any) -> None:
    emulator.faults.update(drop_response_ratio=1.0, operations=["create"])
    request = ApiTokenCreate(name="lost-secret", scopes=["metrics.ingest"])
    async with client_for(emulator) as client:
        with pytest.raises(errors.CreateOutcomeUnknown) as caught:
            await client.create(request)
        assert caught.value.request is request
        assert isinstance(caught.value.__cause__, errors.DynatraceTransportError)
        assert caught.value.__cause__.request_sent
        assert emulator.counters.count("create") == 1

        emulator.faults.reset()
        found = [token async for token in client.list_tokens() if token.name == "lost-secret"]
    assert len(found) == 1


async def test_dropped_create_request_is_outcome_unknown_and_makes_nothing(emulator: Any) -> None:
    # The server closes the connection before handling: nothing is made, but the client cannot know.
    emulator.faults.update(drop_ratio=1.0, operations=["create"])
    async with client_for(emulator) as client:
        with pytest.raises(errors.CreateOutcomeUnknown):
            await client.create(ApiTokenCreate(name="never-made", scopes=["metrics.ingest"]))
        emulator.faults.reset()
        assert [token async for token in client.list_tokens() if token.name == "never-made"] == []
    assert emulator.counters.count("create") == 1


async def test_create_read_timeout_is_outcome_unknown(emulator: Any) -> None:
    emulator.faults.update(latency=0.5, operations=["create"])
    sleeper = Sleeper()
    async with client_for(emulator, read_timeout=0.1, sleep=sleeper) as client:
        with pytest.raises(errors.CreateOutcomeUnknown) as caught:
            await client.create(ApiTokenCreate(name="slow", scopes=["metrics.ingest"]))
    assert isinstance(caught.value.__cause__, errors.DynatraceTransportError)
    assert caught.value.__cause__.timeout
    assert caught.value.__cause__.request_sent
    assert caught.value.attempts == 1
    assert sleeper.delays == []  # never retried: the server may still make the token


async def test_create_is_retried_after_a_throttle(emulator: Any) -> None:
    emulator.faults.update(rate_limit_ratio=1.0, retry_after=1.0, operations=["create"])
    sleeper = Sleeper(then=emulator.faults.reset)
    async with client_for(emulator, sleep=sleeper) as client:
        created = await client.create(ApiTokenCreate(name="patient", scopes=["metrics.ingest"]))
        assert created.id is not None
        assert [token async for token in client.list_tokens() if token.name == "patient"] != []
    assert emulator.counters.count("create", 429) == 1
    assert emulator.counters.count("create", 201) == 1
    assert sleeper.delays == [1.0]


async def test_pagination_over_three_pages(emulator: Any) -> None:
    for number in range(250):
        emulator.create_token(f"paged-{number:03d}", scopes=["metrics.ingest"], owner="pager@example.com")
    async with client_for(emulator) as client:
        tokens = [
            token
            async for token in client.list_tokens(
                selector=Selector(owner="pager@example.com"),
                fields=[ListField.SCOPES],
                sort="name",
                page_size=100,
            )
        ]
    assert [token.name for token in tokens] == [f"paged-{number:03d}" for number in range(250)]
    assert all(token.scopes == ["metrics.ingest"] for token in tokens)
    assert emulator.counters.count("list", 200) == 3
    assert emulator.counters.count("list") == 3


async def test_pagination_survives_a_throttled_continuation(emulator: Any) -> None:
    for number in range(150):
        emulator.create_token(f"page-{number:03d}", owner="pager@example.com")
    sleeper = Sleeper(then=emulator.faults.reset)
    async with client_for(emulator, sleep=sleeper) as client:
        pages = client.list_tokens(selector='owner("pager@example.com")', page_size=100)
        names = [(await anext(pages)).name for _ in range(100)]
        emulator.faults.update(rate_limit_ratio=1.0, retry_after=1.0, operations=["list"])
        names += [token.name async for token in pages]
    assert len(names) == 150 == len(set(names))
    assert emulator.counters.count("list", 429) == 1
    assert emulator.counters.count("list", 200) == 2


async def test_exact_fields(emulator: Any) -> None:
    emulator.create_token("exact", owner="fields@example.com")
    async with client_for(emulator) as client:
        [token] = [
            token
            async for token in client.list_tokens(
                selector=Selector(owner="fields@example.com"), fields=[ListField.NAME], exact_fields=True
            )
        ]
    assert token.name == "exact"
    assert token.id is not None
    assert token.owner is None
    assert token.enabled is None


async def test_refused_connections_are_retried_even_for_a_create(emulator: Any) -> None:
    emulator.faults.update(outage="refuse")
    sleeper = Sleeper(after=2, then=emulator.faults.reset)
    async with client_for(emulator, sleep=sleeper) as client:
        created = await client.create(ApiTokenCreate(name="after-the-outage", scopes=["metrics.ingest"]))
        assert created.id is not None
        assert len([token async for token in client.list_tokens() if token.name == "after-the-outage"]) == 1
    assert len(sleeper.delays) == 2
    assert emulator.counters.count("create") == 1  # the refused attempts never reached the server


async def test_refused_connections_until_max_attempts(emulator: Any) -> None:
    emulator.faults.update(outage="refuse")
    sleeper = Sleeper()
    async with client_for(emulator, sleep=sleeper) as client:
        with pytest.raises(errors.DynatraceTransportError) as caught:
            await client.create(ApiTokenCreate(name="never", scopes=["metrics.ingest"]))
    assert caught.value.request_sent is False
    assert caught.value.attempts == FAST_RETRY.max_attempts
    assert len(sleeper.delays) == FAST_RETRY.max_attempts - 1
    emulator.faults.reset()
    assert emulator.counters.count() == 0
