"""Authentication and authorisation: 401 for missing/bad/disabled/expired tokens, 403 naming the scope."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from apitoken_emulator import Emulator
from apitoken_emulator.tokens import mint_secret
from apitoken_operator.dynatrace.secrets import TokenSecret
from tests.emulator.helpers import API, DATE, client, create, headers


async def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == status
    message: str = body["message"]
    return message


async def test_missing_header_is_401(emulator: Emulator) -> None:
    async with httpx.AsyncClient(base_url=emulator.base_url) as anonymous:
        assert "Missing authorization" in await _error(await anonymous.get(API), 401)


@pytest.mark.parametrize(
    "value",
    [
        "Bearer {token}",
        "Api-Token",
        "Api-Token {unknown}",
        "Api-Token not-a-token",
    ],
)
async def test_bad_header_is_401(emulator: Emulator, value: str) -> None:
    header = value.format(token=emulator.admin_token.reveal(), unknown=mint_secret())
    async with httpx.AsyncClient(base_url=emulator.base_url, headers={"Authorization": header}) as http:
        message = await _error(await http.get(API), 401)
    assert emulator.admin_token.reveal() not in message


async def test_scheme_is_case_insensitive(emulator: Emulator) -> None:
    value = {"Authorization": f"api-token {emulator.admin_token.reveal()}"}
    async with httpx.AsyncClient(base_url=emulator.base_url, headers=value) as http:
        assert (await http.get(API)).status_code == 200


async def test_query_parameter_token_is_refused(emulator: Emulator) -> None:
    async with httpx.AsyncClient(base_url=emulator.base_url) as anonymous:
        response = await anonymous.get(API, params={"api-token": "x"})
    assert "Authorization: Api-Token" in await _error(response, 401)


@pytest.mark.parametrize(
    ("scopes", "request_", "missing"),
    [
        (["apiTokens.write"], ("GET", API, None), "apiTokens.read"),
        (["apiTokens.write"], ("GET", f"{API}/dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX", None), "apiTokens.read"),
        (["apiTokens.read"], ("POST", API, {"name": "n", "scopes": ["metrics.read"]}), "apiTokens.write"),
        (
            ["apiTokens.read"],
            ("PUT", f"{API}/dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX", {"name": "n"}),
            "apiTokens.write",
        ),
        (["apiTokens.read"], ("DELETE", f"{API}/dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX", None), "apiTokens.write"),
    ],
)
async def test_missing_scope_is_403_naming_it(
    emulator: Emulator, scopes: list[str], request_: tuple[str, str, dict[str, object] | None], missing: str
) -> None:
    token = emulator.create_token("limited", scopes)
    method, url, body = request_
    async with client(emulator, token) as http:
        message = await _error(await http.request(method, url, json=body), 403)
    assert missing in message


async def test_lookup_works_with_any_scope(emulator: Emulator) -> None:
    token = emulator.create_token("metrics only", ["metrics.read"])
    async with client(emulator, token) as http:
        response = await http.post(f"{API}/lookup", json={"token": token.reveal()})
    assert response.status_code == 200
    assert response.json()["name"] == "metrics only"


async def test_disabled_token_fails_authentication(emulator: Emulator, api: httpx.AsyncClient) -> None:
    """Disable = revoke: the token stays, but cannot authenticate until enabled again."""
    token = emulator.create_token("worker")
    token_id = token.token_id
    async with client(emulator, token) as http:
        assert (await http.get(API)).status_code == 200
        assert (await api.put(f"{API}/{token_id}", json={"enabled": False})).status_code == 204
        assert "disabled" in await _error(await http.get(API), 401)
        assert (await api.get(f"{API}/{token_id}")).json()["enabled"] is False
        assert (await api.put(f"{API}/{token_id}", json={"enabled": True})).status_code == 204
        assert (await http.get(API)).status_code == 200


async def test_expired_token_fails_authentication(emulator: Emulator, api: httpx.AsyncClient) -> None:
    created = await create(api, scopes=["apiTokens.read"], expirationDate="now+1h")
    token = TokenSecret(created["token"])
    async with client(emulator, token) as http:
        assert (await http.get(API)).status_code == 200
        emulator.clock.shift(timedelta(minutes=59))
        assert (await http.get(API)).status_code == 200
        emulator.clock.shift(timedelta(minutes=2))
        assert "expired" in await _error(await http.get(API), 401)
    # Still listed and readable: expiry does not delete.
    assert (await api.get(f"{API}/{created['id']}")).status_code == 200


async def test_each_authenticated_use_updates_last_used(emulator: Emulator, api: httpx.AsyncClient) -> None:
    token = emulator.create_token("reader", ["apiTokens.read"])
    record = emulator.record_of(token)
    assert record is not None
    assert "lastUsedDate" not in (await api.get(f"{API}/{record.id}")).json()
    async with httpx.AsyncClient(base_url=emulator.base_url, headers=headers(token)) as http:
        await http.get(API)
        first = (await api.get(f"{API}/{record.id}")).json()
        assert DATE.match(first["lastUsedDate"])
        assert first["lastUsedIpAddress"] == "127.0.0.1"
        emulator.clock.shift(3600)
        # A request that fails on scope still authenticated, so it counts as a use.
        assert (await http.post(API, json={"name": "n", "scopes": ["metrics.read"]})).status_code == 403
    second = (await api.get(f"{API}/{record.id}")).json()
    assert second["lastUsedDate"] > first["lastUsedDate"]


async def test_failed_authentication_is_not_a_use(emulator: Emulator, api: httpx.AsyncClient) -> None:
    token = emulator.create_token("disabled", enabled=False)
    async with client(emulator, token) as http:
        assert (await http.get(API)).status_code == 401
    assert "lastUsedDate" not in (await api.get(f"{API}/{token.token_id}")).json()
