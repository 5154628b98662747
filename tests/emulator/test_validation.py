"""Constraint violations: each invalid input gets a 400 naming the path and where it was."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from apitoken_emulator import Emulator
from tests.emulator.helpers import API, create, violations

VALID: dict[str, Any] = {"name": "n", "scopes": ["metrics.read"]}


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ({"scopes": ["metrics.read"]}, "name", "must not be null"),
        ({"name": None, "scopes": ["metrics.read"]}, "name", "must not be null"),
        ({"name": "  ", "scopes": ["metrics.read"]}, "name", "must not be blank"),
        ({"name": 5, "scopes": ["metrics.read"]}, "name", "must be a string"),
        ({"name": "n"}, "scopes", "must not be null"),
        ({"name": "n", "scopes": []}, "scopes", "must not be empty"),
        ({"name": "n", "scopes": "metrics.read"}, "scopes", "must be an array"),
        ({"name": "n", "scopes": ["metrics.read", 3]}, "scopes[1]", "must be a string"),
        (
            {"name": "n", "scopes": ["metrics.read", "no.such.scope"]},
            "scopes[1]",
            "unknown scope 'no.such.scope'",
        ),
        ({"name": "n", "scopes": ["ViewDashboard"]}, "scopes[0]", "can be read but no longer set"),
        ({**VALID, "expirationDate": "yesterday"}, "expirationDate", "is not a UTC millisecond timestamp"),
        ({**VALID, "expirationDate": "2021-02-30T00:00"}, "expirationDate", "is not a valid date"),
        ({**VALID, "expirationDate": 1_900_000_000_000}, "expirationDate", "must be a string"),
        ({**VALID, "expirationDate": "now-1h"}, "expirationDate", "must be in the future"),
        ({**VALID, "expirationDate": "2020-01-01T00:00:00Z"}, "expirationDate", "must be in the future"),
        ({**VALID, "expirationDate": "now"}, "expirationDate", "must be in the future"),
        ({**VALID, "personalAccessToken": "yes"}, "personalAccessToken", "must be true or false"),
    ],
)
async def test_create_violations(
    api: httpx.AsyncClient, body: dict[str, Any], path: str, message: str
) -> None:
    response = await api.post(API, json=body)
    found = violations(response)
    assert path in found, found
    assert message in found[path]
    error = response.json()["error"]
    assert error["code"] == 400
    assert all(item["parameterLocation"] == "PAYLOAD_BODY" for item in error["constraintViolations"])


async def test_all_violations_are_reported_together(api: httpx.AsyncClient) -> None:
    found = violations(await api.post(API, json={"scopes": [], "expirationDate": "bad"}))
    assert set(found) == {"name", "scopes", "expirationDate"}


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"text"'])
async def test_body_must_be_a_json_object(api: httpx.AsyncClient, raw: bytes) -> None:
    response = await api.post(API, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": ""}, "name"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ["bogus"]}, "scopes[0]"),
        ({"scopes": ["Mobile"]}, "scopes[0]"),
        ({"enabled": "no"}, "enabled"),
    ],
)
async def test_update_violations(api: httpx.AsyncClient, body: dict[str, Any], path: str) -> None:
    created = await create(api)
    assert path in violations(await api.put(f"{API}/{created['id']}", json=body))


async def test_update_may_keep_a_legacy_scope_but_not_add_one(
    emulator: Emulator, api: httpx.AsyncClient
) -> None:
    legacy = emulator.create_token("old", ["ViewDashboard", "metrics.read"])
    url = f"{API}/{legacy.token_id}"
    assert (await api.put(url, json={"scopes": ["ViewDashboard", "logs.read"]})).status_code == 204
    assert (await api.get(url)).json()["scopes"] == ["ViewDashboard", "logs.read"]
    assert "scopes[1]" in violations(await api.put(url, json={"scopes": ["ViewDashboard", "ViewReport"]}))


async def test_every_settable_scope_is_accepted(emulator: Emulator, api: httpx.AsyncClient) -> None:
    scopes = sorted(emulator.scopes.settable)
    created = await create(api, scopes=scopes)
    assert sorted((await api.get(f"{API}/{created['id']}")).json()["scopes"]) == scopes


async def test_duplicate_scopes_collapse(api: httpx.AsyncClient) -> None:
    created = await create(api, scopes=["metrics.read", "logs.read", "metrics.read"])
    assert (await api.get(f"{API}/{created['id']}")).json()["scopes"] == ["metrics.read", "logs.read"]


@pytest.mark.parametrize("body", [{}, {"token": ""}, {"token": 3}])
async def test_lookup_violations(api: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert "token" in violations(await api.post(f"{API}/lookup", json=body))


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"pageSize": "99"}, "pageSize"),
        ({"pageSize": "10001"}, "pageSize"),
        ({"pageSize": "lots"}, "pageSize"),
        ({"fields": "+scopes,owner"}, "fields"),
        ({"fields": "+secret"}, "fields"),
        ({"fields": "token"}, "fields"),
        ({"sort": "owner"}, "sort"),
        ({"sort": "-id"}, "sort"),
        ({"apiTokenSelector": "owner(x)"}, "apiTokenSelector"),
        ({"from": "last week"}, "from"),
        ({"to": "soon"}, "to"),
        ({"from": "now-1h", "to": "now-2h"}, "from"),
        ({"nextPageKey": "garbage!"}, "nextPageKey"),
        ({"nextPageKey": "eyJ4IjoxfQ"}, "nextPageKey"),
    ],
)
async def test_list_violations(api: httpx.AsyncClient, params: dict[str, str], path: str) -> None:
    response = await api.get(API, params=params)
    found = violations(response)
    assert path in found, found
    assert response.json()["error"]["constraintViolations"][0]["parameterLocation"] == "QUERY"


@pytest.mark.parametrize("size", ["100", "10000"])
async def test_page_size_bounds_are_inclusive(api: httpx.AsyncClient, size: str) -> None:
    response = await api.get(API, params={"pageSize": size})
    assert response.status_code == 200
    assert response.json()["pageSize"] == int(size)
