"""Listing and GET latency taken after the snapshot: an answer describes the store as it was when read."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from apitoken_emulator import Emulator
from apitoken_emulator import api as api_module
from tests.emulator.helpers import API, create, eventually

WAIT = 10.0


async def _snapshot_taken(emulator: Emulator, usage_before: int) -> None:
    """Until the request's authentication has counted a use: its handler then snapshots in the same
    step of the loop (no await between authenticating and building the body)."""
    await eventually(lambda: emulator.store.usage_version != usage_before, seconds=WAIT)


async def test_a_list_answer_lacks_a_token_created_during_its_latency(
    emulator: Emulator, api: httpx.AsyncClient
) -> None:
    doomed = await create(api, name="deleted meanwhile")
    emulator.faults.update(list_latency=1.0)
    usage = emulator.store.usage_version
    listing = asyncio.create_task(api.get(API))
    await _snapshot_taken(emulator, usage)
    created = await create(api, name="created meanwhile")  # create and delete are not delayed
    assert (await api.delete(f"{API}/{doomed['id']}")).status_code == 204
    answer = await listing
    assert answer.status_code == 200
    ids = {token["id"] for token in answer.json()["apiTokens"]}
    assert created["id"] not in ids  # the answer is older than its arrival
    assert doomed["id"] in ids
    assert answer.json()["totalCount"] == 2
    emulator.faults.update(list_latency=0.0)
    now = {token["id"] for token in (await api.get(API)).json()["apiTokens"]}
    assert created["id"] in now
    assert doomed["id"] not in now


async def test_a_get_answer_shows_the_token_as_it_was(emulator: Emulator, api: httpx.AsyncClient) -> None:
    token = await create(api, name="before")
    emulator.faults.update(get_latency=1.0)
    usage = emulator.store.usage_version
    reading = asyncio.create_task(api.get(f"{API}/{token['id']}"))
    await _snapshot_taken(emulator, usage)
    assert (await api.put(f"{API}/{token['id']}", json={"name": "after"})).status_code == 204
    answer = await reading
    assert answer.status_code == 200
    assert answer.json()["name"] == "before"
    assert "modifiedDate" not in answer.json()


async def test_list_latency_grows_with_the_page(
    emulator: Emulator, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    async def recorded(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(api_module, "_answer_later", recorded)
    for index in range(149):
        emulator.create_token(f"t{index}")
    emulator.faults.update(list_latency=2.0, list_latency_per_1000=0.2, get_latency=0.2)
    first = (await api.get(API, params={"pageSize": 100})).json()
    assert len(first["apiTokens"]) == 100
    last = (await api.get(API, params={"nextPageKey": first["nextPageKey"]})).json()
    assert len(last["apiTokens"]) == 50
    await api.get(f"{API}/{emulator.admin_token.token_id}")
    assert waits == pytest.approx([2.0 + 0.02, 2.0 + 0.01, 0.2])


async def test_the_latencies_are_off_by_default(emulator: Emulator) -> None:
    config = emulator.faults.config
    assert (config.list_latency, config.list_latency_per_1000, config.get_latency) == (0.0, 0.0, 0.0)
