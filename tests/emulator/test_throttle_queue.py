"""Throttling as Dynatrace documents it: a bare 429, possibly after a wait in the queue; a request pool."""

from __future__ import annotations

import asyncio
import time

import httpx

from apitoken_emulator import Emulator, FaultConfig
from apitoken_emulator.faults import Faults
from tests.emulator.helpers import API, eventually

RATE_LIMIT_HEADERS = ("Retry-After", "X-RateLimit-Reset", "X-RateLimit-Limit", "X-RateLimit-Remaining")


def test_the_queue_wait_is_drawn_up_to_throttle_wait() -> None:
    config = FaultConfig(rate_limit_ratio=1.0, throttle_wait=10.0, retry_after=None)
    waits = [Faults(seed=seed, config=config).decide("list").queue_wait for seed in range(50)]
    assert all(0.0 <= wait <= 10.0 for wait in waits)
    assert len(set(waits)) == len(waits)  # drawn, not fixed
    again = [Faults(seed=seed, config=config).decide("list").queue_wait for seed in range(50)]
    assert waits == again  # seeded


def test_no_queue_wait_draw_without_throttle_wait() -> None:
    """Turning the wait off leaves the other faults' draws where they were."""
    plain = Faults(seed=3, config=FaultConfig(rate_limit_ratio=0.5, server_error_ratio=0.5))
    decisions = [plain.decide("get") for _ in range(50)]
    assert all(decision.queue_wait == 0.0 for decision in decisions)
    assert {decision.status for decision in decisions} >= {429, None}


async def test_a_bare_429_after_the_queue_wait(emulator: Emulator, api: httpx.AsyncClient) -> None:
    config = FaultConfig(rate_limit_ratio=1.0, retry_after=None, throttle_wait=1.0)
    expected = Faults(seed=0, config=config).decide("list").queue_wait  # the fixture's seed is 0
    emulator.faults.set(config)
    started = time.monotonic()
    response = await api.get(API)
    elapsed = time.monotonic() - started
    assert response.status_code == 429
    assert response.json()["error"]["code"] == 429
    for header in RATE_LIMIT_HEADERS:
        assert header not in response.headers
    assert elapsed >= expected - 0.01  # a lower bound only: a noisy machine may take longer
    assert emulator.counters.count("list", 429) == 1


async def test_a_full_pool_answers_429_after_waiting_in_vain(
    emulator: Emulator, api: httpx.AsyncClient
) -> None:
    emulator.faults.update(throttle_capacity=1, throttle_wait=0.1, list_latency=2.0, retry_after=None)
    usage = emulator.store.usage_version
    first = asyncio.create_task(api.get(API))
    await eventually(lambda: emulator.store.usage_version != usage)  # it holds the pool's only slot
    second = await api.get(API)
    assert second.status_code == 429
    for header in RATE_LIMIT_HEADERS:
        assert header not in second.headers
    assert (await first).status_code == 200


async def test_a_request_waiting_for_a_slot_gets_it_when_one_frees(
    emulator: Emulator, api: httpx.AsyncClient
) -> None:
    emulator.faults.update(throttle_capacity=1, throttle_wait=30.0, list_latency=0.2)
    statuses = await asyncio.gather(*(api.get(API) for _ in range(3)))
    assert [response.status_code for response in statuses] == [200, 200, 200]
    emulator.faults.update(throttle_capacity=None)
    assert (await api.get(API)).status_code == 200
