"""The list operation: pagination, fields, selector, sort and last-use filters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from apitoken_emulator import Emulator
from tests.emulator.helpers import API, DATE, client, list_all, violations


def _mint(emulator: Emulator, count: int, **options: Any) -> list[str]:
    return [
        emulator.create_token(f"token-{index:03d}", ["metrics.read"], **options).token_id
        for index in range(count)
    ]


async def test_defaults(emulator: Emulator, api: httpx.AsyncClient) -> None:
    page = (await api.get(API)).json()
    assert page["totalCount"] == 1
    assert page["pageSize"] == 200
    assert page["nextPageKey"] is None
    [admin] = page["apiTokens"]
    assert set(admin) == {"id", "name", "enabled", "owner", "creationDate"}
    assert DATE.match(admin["creationDate"])


async def test_pages_cover_every_token_once(emulator: Emulator, api: httpx.AsyncClient) -> None:
    ids = set(_mint(emulator, 250)) | {emulator.admin_token.token_id}
    first = (await api.get(API, params={"pageSize": 100})).json()
    assert first["totalCount"] == 251
    assert len(first["apiTokens"]) == 100
    assert first["nextPageKey"]
    second = (await api.get(API, params={"nextPageKey": first["nextPageKey"]})).json()
    assert len(second["apiTokens"]) == 100
    assert second["pageSize"] == 100
    third = (await api.get(API, params={"nextPageKey": second["nextPageKey"]})).json()
    assert len(third["apiTokens"]) == 51
    assert third["nextPageKey"] is None
    seen = [token["id"] for page in (first, second, third) for token in page["apiTokens"]]
    assert len(seen) == len(set(seen)) == 251
    assert set(seen) == ids


async def test_exact_multiple_of_page_size_has_no_empty_last_page(
    emulator: Emulator, api: httpx.AsyncClient
) -> None:
    _mint(emulator, 199)
    first = (await api.get(API, params={"pageSize": 100})).json()
    second = (await api.get(API, params={"nextPageKey": first["nextPageKey"]})).json()
    assert len(second["apiTokens"]) == 100
    assert second["nextPageKey"] is None


async def test_cursor_keeps_the_query(emulator: Emulator, api: httpx.AsyncClient) -> None:
    _mint(emulator, 150, owner="alice")
    params = {"pageSize": 100, "fields": "name,scopes", "apiTokenSelector": 'owner("alice")', "sort": "name"}
    tokens = await list_all(api, **params)
    assert [token["name"] for token in tokens] == [f"token-{index:03d}" for index in range(150)]
    assert all(set(token) == {"id", "name", "scopes"} for token in tokens)


async def test_next_page_key_with_other_parameters_is_400(emulator: Emulator, api: httpx.AsyncClient) -> None:
    _mint(emulator, 150)
    key = (await api.get(API, params={"pageSize": 100})).json()["nextPageKey"]
    found = violations(await api.get(API, params={"nextPageKey": key, "pageSize": 100, "sort": "name"}))
    assert set(found) == {"pageSize", "sort"}
    assert "nextPageKey" in found["pageSize"]


async def test_walk_survives_changes_between_pages(emulator: Emulator, api: httpx.AsyncClient) -> None:
    """Keyset cursors: deleting or creating tokens mid-walk never skips or repeats a surviving token."""
    ids = _mint(emulator, 300)
    first = (await api.get(API, params={"pageSize": 100, "sort": "+creationDate"})).json()
    seen = [token["id"] for token in first["apiTokens"]]
    for token_id in [*seen[:50], *ids[150:160]]:  # delete some served and some not yet served
        await api.delete(f"{API}/{token_id}")
    _mint(emulator, 5)  # created after the walk began: sorted after the cursor, so they show up
    key = first["nextPageKey"]
    while key:
        page = (await api.get(API, params={"nextPageKey": key})).json()
        seen.extend(token["id"] for token in page["apiTokens"])
        key = page["nextPageKey"]
    assert len(seen) == len(set(seen))
    survivors = set(ids) - set(ids[150:160])
    assert survivors <= set(seen)
    assert not set(ids[150:160]) & set(seen[100:])


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("+scopes,+expirationDate", {"id", "name", "enabled", "owner", "creationDate", "scopes", "expirationDate"}),  # noqa: E501
        ("+scopes,-owner,-creationDate", {"id", "name", "enabled", "scopes"}),
        ("-id,-name", {"id", "enabled", "owner", "creationDate"}),
        ("name,scopes", {"id", "name", "scopes"}),
        ("creationDate , expirationDate", {"id", "creationDate", "expirationDate"}),
        (
            "+personalAccessToken,+lastUsedDate,+lastUsedIpAddress,+modifiedDate,+additionalMetadata",
            {
                "id", "name", "enabled", "owner", "creationDate", "personalAccessToken",
                "lastUsedDate", "lastUsedIpAddress", "modifiedDate", "additionalMetadata",
            },
        ),
    ],
)  # fmt: skip
async def test_fields(emulator: Emulator, api: httpx.AsyncClient, fields: str, expected: set[str]) -> None:
    emulator.create_token(
        "everything", ["metrics.read"], expiration_date=emulator.clock() + timedelta(days=1),
        additional_metadata={"dashboardId": "82402bab"},
    )  # fmt: skip
    token_id = emulator.create_token("to modify").token_id
    await api.put(f"{API}/{token_id}", json={"name": "modified"})
    await api.get(API)  # the admin token now has a last use
    tokens = (await api.get(API, params={"fields": fields})).json()["apiTokens"]
    union = set().union(*(set(token) for token in tokens))
    assert union == expected


async def test_fields_plus_must_be_encoded(api: httpx.AsyncClient) -> None:
    # httpx encodes "+" in params as %2B; a client that writes the query by hand must too.
    response = await api.get(f"{API}?fields=+scopes")
    assert "%2B" in violations(response)["fields"]
    assert (await api.get(f"{API}?fields=%2Bscopes")).status_code == 200


async def test_selector(emulator: Emulator, api: httpx.AsyncClient) -> None:
    alice_metrics = emulator.create_token("a1", ["metrics.read"], owner="alice").token_id
    alice_logs = emulator.create_token(
        "a2", ["logs.read"], owner="alice", personal_access_token=True
    ).token_id
    bob = emulator.create_token("b1", ["metrics.read", "logs.read"], owner='bob "the builder"').token_id

    async def ids(selector: str) -> set[str]:
        return {token["id"] for token in await list_all(api, apiTokenSelector=selector)}

    assert await ids('owner("alice")') == {alice_metrics, alice_logs}
    assert await ids(r'owner("bob \"the builder\"")') == {bob}
    assert await ids('scope("logs.read","entities.read")') == {alice_logs, bob}
    assert await ids('owner("alice"),scope("logs.read")') == {alice_logs}
    assert await ids("personalAccessToken(true)") == {alice_logs}
    assert await ids('personalAccessToken(false),scope("metrics.read")') == {alice_metrics, bob}
    assert await ids('owner("nobody")') == set()
    assert (await api.get(API, params={"apiTokenSelector": 'owner("alice")'})).json()["totalCount"] == 2


async def test_sort_by_name(emulator: Emulator, api: httpx.AsyncClient) -> None:
    for name in ["beta", "Alpha", "gamma", "alpha"]:
        emulator.create_token(name)
    ascending = [token["name"] for token in await list_all(api, sort="name")]
    assert ascending == ["Alpha", "alpha", "beta", "emulator-admin", "gamma"]
    descending = [token["name"] for token in await list_all(api, sort="-name")]
    assert descending == ascending[::-1]
    assert [token["name"] for token in await list_all(api, sort="+name")] == ascending


async def test_default_sort_is_newest_first(emulator: Emulator, api: httpx.AsyncClient) -> None:
    names = []
    for index in range(5):
        emulator.clock.shift(1)
        names.append(emulator.create_token(f"n{index}").token_id)
    listed = [token["id"] for token in await list_all(api)]
    assert listed == [*names[::-1], emulator.admin_token.token_id]
    assert [token["id"] for token in await list_all(api, sort="creationDate")] == listed[::-1]


async def test_sort_by_expiration_puts_unlimited_last(emulator: Emulator, api: httpx.AsyncClient) -> None:
    now = emulator.clock()
    later = emulator.create_token("later", expiration_date=now + timedelta(days=2)).token_id
    sooner = emulator.create_token("sooner", expiration_date=now + timedelta(days=1)).token_id
    unlimited = emulator.create_token("unlimited").token_id
    admin = emulator.admin_token.token_id
    ascending = [token["id"] for token in await list_all(api, sort="+expirationDate")]
    assert ascending == [sooner, later, admin, unlimited]
    descending = [token["id"] for token in await list_all(api, sort="-expirationDate")]
    assert descending == [unlimited, admin, later, sooner]


async def test_sort_by_last_use_and_modification_puts_never_first(
    emulator: Emulator, api: httpx.AsyncClient
) -> None:
    never = emulator.create_token("never", ["apiTokens.read"])
    early = emulator.create_token("early", ["apiTokens.read"])
    late = emulator.create_token("late", ["apiTokens.read"])
    for token in (early, late):
        emulator.clock.shift(10)
        async with client(emulator, token) as http:
            await http.get(API)
    emulator.clock.shift(10)
    by_use = [token["id"] for token in await list_all(api, sort="+lastUsedDate", fields="name")]
    # the admin's own listing is its latest use
    assert by_use == [never.token_id, early.token_id, late.token_id, emulator.admin_token.token_id]
    by_recent_use = [token["id"] for token in await list_all(api, sort="-lastUsedDate")]
    assert by_recent_use[0] == emulator.admin_token.token_id
    assert by_recent_use[-1] == never.token_id

    await api.put(f"{API}/{late.token_id}", json={"name": "late!"})
    emulator.clock.shift(10)
    await api.put(f"{API}/{early.token_id}", json={"name": "early!"})
    by_change = [token["id"] for token in await list_all(api, sort="+modifiedDate")]
    assert by_change[-2:] == [late.token_id, early.token_id]
    assert [token["id"] for token in await list_all(api, sort="-modifiedDate")][:2] == [
        early.token_id,
        late.token_id,
    ]


async def test_from_and_to_filter_on_last_use(emulator: Emulator, api: httpx.AsyncClient) -> None:
    start = emulator.clock()
    old = emulator.create_token("old", ["apiTokens.read"])
    recent = emulator.create_token("recent", ["apiTokens.read"])
    emulator.create_token("never used", ["apiTokens.read"])
    async with client(emulator, old) as http:
        await http.get(API)
    emulator.clock.shift(timedelta(hours=3))
    async with client(emulator, recent) as http:
        await http.get(API)

    async def names(**params: str) -> set[str]:
        return {token["name"] for token in await list_all(api, **params)}

    assert await names(**{"from": "now-1h"}) == {"recent", "emulator-admin"}
    assert await names(**{"from": "now-4h", "to": "now-2h"}) == {"old"}
    stamp = str(int((start + timedelta(hours=1)).timestamp() * 1000))
    assert await names(to=stamp) == {"old"}
