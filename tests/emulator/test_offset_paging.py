"""Offset paging: cursors as Dynatrace's examples decode, the query kept server-side, and the skip."""

from __future__ import annotations

import base64
import struct
from typing import Any

import httpx

from apitoken_emulator import Emulator
from tests.emulator.helpers import API, list_all, violations


def _decode(key: str) -> tuple[int, int, int]:
    offset, size, tag = struct.unpack(">IIB", base64.b64decode(key))
    return offset, size, tag


async def _page(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await api.get(API, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_cursors_decode_like_the_documented_example(emulator: Emulator, api: httpx.AsyncClient) -> None:
    emulator.faults.update(paging="offset")
    for index in range(249):
        emulator.create_token(f"t{index}")
    first = await _page(api, pageSize=100)
    assert first["nextPageKey"] == "AAAAZAAAAGQA"  # Dynatrace's example: offset 100, page size 100
    second = await _page(api, nextPageKey=first["nextPageKey"])
    assert _decode(second["nextPageKey"]) == (200, 100, 0)
    third = await _page(api, nextPageKey=second["nextPageKey"])
    assert third["nextPageKey"] is None
    assert len(third["apiTokens"]) == 50
    assert {page["totalCount"] for page in (first, second, third)} == {250}
    walked = [token["id"] for page in (first, second, third) for token in page["apiTokens"]]
    assert len(set(walked)) == 250


async def test_the_rest_of_the_query_applies_to_later_pages(
    emulator: Emulator, api: httpx.AsyncClient
) -> None:
    emulator.faults.update(paging="offset")
    for index in range(150):
        emulator.create_token(f"mine-{index:03}", owner="alice@example.com")
        emulator.create_token(f"other-{index:03}", owner="bob@example.com")
    params = {
        "pageSize": 100,
        "apiTokenSelector": 'owner("alice@example.com")',
        "sort": "name",
        "fields": "name,owner",
    }
    tokens = await list_all(api, **params)
    assert [token["name"] for token in tokens] == [f"mine-{index:03}" for index in range(150)]
    assert all(set(token) == {"id", "name", "owner"} for token in tokens)
    # Another query reaching the same offset with the same page size gets its own cursor (last byte).
    first = await _page(api, pageSize=100, sort="-name")
    assert _decode(first["nextPageKey"]) == (100, 100, 1)
    rest = await _page(api, nextPageKey=first["nextPageKey"])
    assert [token["name"] for token in rest["apiTokens"]][:2] == ["other-049", "other-048"]


async def test_an_unknown_offset_cursor_is_a_400(emulator: Emulator, api: httpx.AsyncClient) -> None:
    emulator.faults.update(paging="offset")
    response = await api.get(API, params={"nextPageKey": "AAAAZAAAAGQA"})  # never issued here
    assert "nextPageKey" in violations(response)
    first = await _page(api)
    assert first["nextPageKey"] is None  # one token: a single page
    mixed = await api.get(API, params={"nextPageKey": "AAAAZAAAAGQA", "pageSize": 100})
    assert "pageSize" in violations(mixed)


async def _delete_first_and_walk(
    emulator: Emulator, api: httpx.AsyncClient
) -> tuple[list[str], set[str], str]:
    """Walk 250 tokens newest first, deleting the newest one between the first and second page.
    Returns the ids walked, the ids alive throughout and the deleted id."""
    for index in range(249):
        emulator.create_token(f"t{index}")
    first = await _page(api, pageSize=100)
    doomed = first["apiTokens"][0]["id"]
    assert (await api.delete(f"{API}/{doomed}")).status_code == 204
    walked = [token["id"] for token in first["apiTokens"]]
    key = first["nextPageKey"]
    while key is not None:
        page = await _page(api, nextPageKey=key)
        walked.extend(token["id"] for token in page["apiTokens"])
        key = page["nextPageKey"]
    alive = {record.id for record in emulator.store}
    return walked, alive, doomed


async def test_offset_paging_skips_a_live_token_when_one_is_deleted_between_pages(
    emulator: Emulator, api: httpx.AsyncClient
) -> None:
    emulator.faults.update(paging="offset")
    walked, alive, doomed = await _delete_first_and_walk(emulator, api)
    skipped = alive - set(walked)
    assert len(skipped) == 1  # exactly one live token was never listed
    [lost] = skipped
    # It is the token that was 101st newest: it moved onto the page already served.
    newest_first = sorted(emulator.store, key=lambda record: record.sequence, reverse=True)
    assert lost == newest_first[99].id
    assert doomed in walked
    assert len(walked) == len(set(walked)) == 249


async def test_keyset_paging_skips_nothing_in_the_same_walk(
    emulator: Emulator, api: httpx.AsyncClient
) -> None:
    assert emulator.faults.config.paging == "keyset"
    walked, alive, _ = await _delete_first_and_walk(emulator, api)
    assert alive <= set(walked)
    assert len(walked) == len(set(walked))


async def test_a_cursor_continues_in_the_mode_that_issued_it(
    emulator: Emulator, api: httpx.AsyncClient
) -> None:
    for index in range(149):
        emulator.create_token(f"t{index}")
    keyset = await _page(api, pageSize=100)
    emulator.faults.update(paging="offset")
    offset = await _page(api, pageSize=100)
    emulator.faults.update(paging="keyset")
    assert len((await _page(api, nextPageKey=keyset["nextPageKey"]))["apiTokens"]) == 50
    assert len((await _page(api, nextPageKey=offset["nextPageKey"]))["apiTokens"]) == 50
