"""Fault injection: throttling, server errors, latency, dropped connections, outages; and the counters."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from apitoken_emulator import Emulator, FaultConfig, Outage, start_emulator
from apitoken_emulator.faults import Faults
from tests.emulator.helpers import API, client


async def test_throttling_with_retry_after(emulator: Emulator, api: httpx.AsyncClient) -> None:
    emulator.faults.update(rate_limit_ratio=1.0, retry_after=2.5, rate_limit_reset=True)
    before = time.time()
    response = await api.get(API)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == 429
    assert response.headers["Retry-After"] == "3"
    reset_seconds = int(response.headers["X-RateLimit-Reset"]) / 1_000_000
    assert before + 2 < reset_seconds < time.time() + 3
    assert emulator.counters.count("list", 429) == 1


async def test_throttling_without_headers(emulator: Emulator, api: httpx.AsyncClient) -> None:
    emulator.faults.update(rate_limit_ratio=1.0, retry_after=None)
    response = await api.get(API)
    assert response.status_code == 429
    assert "Retry-After" not in response.headers
    assert "X-RateLimit-Reset" not in response.headers


def test_ratio_is_seeded_and_reproducible() -> None:
    def outcomes(seed: int) -> list[int | None]:
        faults = Faults(seed=seed, config=FaultConfig(rate_limit_ratio=0.3, server_error_ratio=0.2))
        return [faults.decide("get").status for _ in range(200)]

    first = outcomes(7)
    assert first == outcomes(7)
    assert first != outcomes(8)
    assert 35 <= first.count(429) <= 85  # 30 % of 200, drawn
    assert {status for status in first if status and status >= 500} <= {502, 503, 504}


async def test_ratio_over_http(emulator: Emulator, api: httpx.AsyncClient) -> None:
    emulator.faults.update(rate_limit_ratio=0.5)
    statuses = [(await api.get(API)).status_code for _ in range(60)]
    assert set(statuses) == {200, 429}
    assert emulator.counters.count("list", 429) == statuses.count(429)
    assert emulator.counters.count("list", 200) == statuses.count(200)


async def test_server_errors(emulator: Emulator, api: httpx.AsyncClient) -> None:
    emulator.faults.update(server_error_ratio=1.0, server_error_statuses=(502, 504))
    statuses = {(await api.get(API)).status_code for _ in range(20)}
    assert statuses == {502, 504}
    emulator.faults.update(server_error_statuses=(503,), server_error_html=True)
    response = await api.get(API)
    assert response.status_code == 503
    assert response.headers["Content-Type"].startswith("text/html")


async def test_latency(emulator: Emulator, api: httpx.AsyncClient) -> None:
    emulator.faults.update(latency=0.3)
    started = time.monotonic()
    assert (await api.get(API)).status_code == 200
    assert time.monotonic() - started >= 0.3


async def test_dropped_connection(emulator: Emulator, api: httpx.AsyncClient) -> None:
    emulator.faults.update(drop_ratio=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        await api.post(API, json={"name": "never", "scopes": ["metrics.read"]})
    assert len(emulator.store) == 1  # nothing was created
    assert emulator.counters.snapshot() == {"create": {"dropped": 1}}


async def test_dropped_create_response_still_creates_the_token(
    emulator: Emulator, api: httpx.AsyncClient
) -> None:
    emulator.faults.update(drop_response_ratio=1.0, operations=frozenset({"create"}))
    with pytest.raises(httpx.RemoteProtocolError):
        await api.post(API, json={"name": "orphan", "scopes": ["metrics.read"]})
    emulator.faults.reset()
    names = [token["name"] for token in (await api.get(API)).json()["apiTokens"]]
    assert names.count("orphan") == 1
    assert emulator.counters.count("create", "dropped") == 1


async def test_faults_can_be_limited_to_operations(emulator: Emulator, api: httpx.AsyncClient) -> None:
    emulator.faults.update(rate_limit_ratio=1.0, operations=frozenset({"create", "delete"}))
    assert (await api.get(API)).status_code == 200
    assert (await api.post(API, json={"name": "n", "scopes": ["metrics.read"]})).status_code == 429


async def test_unavailable_outage(emulator: Emulator, api: httpx.AsyncClient) -> None:
    emulator.faults.update(outage=Outage.UNAVAILABLE)
    assert (await api.get(API)).status_code == 503
    assert (await api.post(f"{API}/lookup", json={"token": "x"})).status_code == 503
    async with httpx.AsyncClient(base_url=emulator.base_url) as admin:
        assert (await admin.get("/_emulator/health")).status_code == 200
    emulator.faults.update(outage=Outage.OFF)
    assert (await api.get(API)).status_code == 200


async def test_refuse_outage_refuses_connections_and_comes_back(emulator: Emulator) -> None:
    async with client(emulator) as api:
        assert (await api.get(API)).status_code == 200  # a keep-alive connection is now open
        emulator.faults.update(outage=Outage.REFUSE)
        with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError)):
            await api.get(API)
    async with client(emulator) as fresh:
        with pytest.raises(httpx.ConnectError):
            await fresh.get(API)
        emulator.faults.update(outage=Outage.OFF)
        assert (await fresh.get(API)).status_code == 200


async def test_timed_outage_lifts_by_itself(emulator: Emulator, api: httpx.AsyncClient) -> None:
    emulator.faults.update(outage=Outage.REFUSE, outage_seconds=0.3)
    async with client(emulator) as fresh:
        with pytest.raises(httpx.ConnectError):
            await fresh.get(API)
    await asyncio.sleep(0.5)
    async with client(emulator) as fresh:
        assert (await fresh.get(API)).status_code == 200
    emulator.faults.update(outage=Outage.UNAVAILABLE, outage_seconds=0.2)
    assert (await api.get(API)).status_code == 503
    await asyncio.sleep(0.3)
    assert (await api.get(API)).status_code == 200


async def test_faults_given_at_start() -> None:
    async with start_emulator(faults=FaultConfig(rate_limit_ratio=1.0), validate_responses=True) as emulator:
        async with client(emulator) as api:
            assert (await api.get(API)).status_code == 429
        assert not emulator.contract_violations


@pytest.mark.parametrize(
    "changes",
    [
        {"rate_limit_ratio": 1.5},
        {"drop_ratio": -0.1},
        {"latency": -1},
        {"server_error_statuses": [404]},
        {"operations": ["list", "nope"]},
        {"outage": "sometimes"},
        {"no_such_setting": 1},
    ],
)
def test_invalid_settings_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each message differs; the type is the contract
        Faults().update(**changes)


async def test_counters_by_operation_and_status(emulator: Emulator, api: httpx.AsyncClient) -> None:
    created = (await api.post(API, json={"name": "n", "scopes": ["metrics.read"]})).json()
    await api.get(f"{API}/{created['id']}")
    await api.get(f"{API}/dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX")
    await api.put(f"{API}/{created['id']}", json={"name": "m"})
    await api.post(f"{API}/lookup", json={"token": created["token"]})
    await api.delete(f"{API}/{created['id']}")
    await api.get(API)
    assert emulator.counters.snapshot() == {
        "create": {"201": 1},
        "get": {"200": 1, "404": 1},
        "update": {"204": 1},
        "lookup": {"200": 1},
        "delete": {"204": 1},
        "list": {"200": 1},
    }
    assert emulator.counters.count("get") == 2
    assert emulator.counters.count(outcome=200) == 3
    emulator.counters.reset()
    assert emulator.counters.count() == 0
