"""The operations and the semantics tokens-api.md lists: one test per quirk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import httpx
import pytest

from apitoken_emulator import Emulator
from apitoken_operator.dynatrace.dates import format_date
from apitoken_operator.dynatrace.secrets import TOKEN_PATTERN, TokenSecret, contains_secret
from tests.emulator.helpers import API, DATE, client, create, headers, list_all


async def test_create_returns_id_secret_and_expiry_only(emulator: Emulator, api: httpx.AsyncClient) -> None:
    created = await create(api, name="ci", scopes=["metrics.read"], expirationDate="now+14d")
    assert set(created) == {"id", "token", "expirationDate"}
    assert TOKEN_PATTERN.fullmatch(created["token"])
    assert created["token"].startswith(created["id"] + ".")
    assert created["id"].startswith("dt0c01.")
    assert len(created["id"]) == 7 + 24
    assert DATE.match(created["expirationDate"])
    without_expiry = await create(api)
    assert set(without_expiry) == {"id", "token"}


async def test_secret_is_returned_exactly_once(emulator: Emulator, api: httpx.AsyncClient) -> None:
    created = await create(api, name="once")
    responses = [
        await api.get(f"{API}/{created['id']}"),
        await api.get(API, params={"fields": "+scopes,+expirationDate,+lastUsedDate,+additionalMetadata"}),
        await api.post(f"{API}/lookup", json={"token": created["token"]}),
    ]
    for response in responses:
        assert response.status_code == 200
        assert not contains_secret(response.text)
    tokens = await emulator_admin_view(emulator)
    assert not contains_secret(tokens.text)


async def emulator_admin_view(emulator: Emulator) -> httpx.Response:
    async with httpx.AsyncClient(base_url=emulator.base_url) as http:
        return await http.get("/_emulator/tokens")


async def test_new_token_is_usable_and_enabled(emulator: Emulator, api: httpx.AsyncClient) -> None:
    created = await create(api, scopes=["apiTokens.read"], enabled=False)  # no `enabled` on create: ignored
    async with client(emulator, TokenSecret(created["token"])) as http:
        assert (await http.get(API)).status_code == 200
    assert (await api.get(f"{API}/{created['id']}")).json()["enabled"] is True


async def test_names_are_not_unique(emulator: Emulator, api: httpx.AsyncClient) -> None:
    first = await create(api, name="same")
    second = await create(api, name="same")
    assert first["id"] != second["id"]
    named = [token for token in await list_all(api) if token["name"] == "same"]
    assert {token["id"] for token in named} == {first["id"], second["id"]}


async def test_get_returns_all_metadata(emulator: Emulator, api: httpx.AsyncClient) -> None:
    created = await create(api, name="full", scopes=["metrics.read", "logs.read"], expirationDate="now+1d")
    body = (await api.get(f"{API}/{created['id']}")).json()
    assert body["id"] == created["id"]
    assert body["name"] == "full"
    assert body["enabled"] is True
    assert body["personalAccessToken"] is False
    assert body["owner"] == "admin@example.com"
    assert body["scopes"] == ["metrics.read", "logs.read"]
    assert body["expirationDate"] == created["expirationDate"]
    for key in ("creationDate", "expirationDate"):
        assert DATE.match(body[key]), body[key]
    assert "modifiedDate" not in body
    assert "lastUsedDate" not in body


async def test_dates_are_utc_iso_with_milliseconds(api: httpx.AsyncClient) -> None:
    created = await create(api, expirationDate="2099-01-25T05:57:01.123456+01:00")
    assert created["expirationDate"] == "2099-01-25T04:57:01.123Z"
    created = await create(api, expirationDate="2099-01-25 05:57")
    assert created["expirationDate"] == "2099-01-25T05:57:00.000Z"
    created = await create(api, expirationDate="4102444800000")
    assert created["expirationDate"] == "2100-01-01T00:00:00.000Z"


async def test_relative_expiry_is_answered_as_absolute(emulator: Emulator, api: httpx.AsyncClient) -> None:
    created = await create(api, expirationDate="now+14d/d")
    expected = (emulator.clock() + timedelta(days=14)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert created["expirationDate"] == format_date(expected)


async def test_put_replaces_scopes_and_keeps_the_rest(emulator: Emulator, api: httpx.AsyncClient) -> None:
    created = await create(api, name="n", scopes=["metrics.read", "logs.read"])
    response = await api.put(f"{API}/{created['id']}", json={"scopes": ["entities.read"]})
    assert response.status_code == 204
    assert response.content == b""
    body = (await api.get(f"{API}/{created['id']}")).json()
    assert body["scopes"] == ["entities.read"]
    assert body["name"] == "n"
    assert body["enabled"] is True


async def test_put_ignores_expiry_and_personal_access_token(
    emulator: Emulator, api: httpx.AsyncClient
) -> None:
    """Immutable after creation. The Terraform provider sends them anyway: ignored, not refused."""
    created = await create(api, expirationDate="now+1d")
    before = (await api.get(f"{API}/{created['id']}")).json()
    body = {"name": "renamed", "expirationDate": "now+30d", "personalAccessToken": True}
    assert (await api.put(f"{API}/{created['id']}", json=body)).status_code == 204
    after = (await api.get(f"{API}/{created['id']}")).json()
    assert after["name"] == "renamed"
    assert after["expirationDate"] == before["expirationDate"]
    assert after["personalAccessToken"] is False


async def test_modified_date_moves_on_name_or_scopes_only(emulator: Emulator, api: httpx.AsyncClient) -> None:
    created = await create(api, scopes=["metrics.read", "logs.read"])
    url = f"{API}/{created['id']}"

    async def modified() -> str | None:
        value: str | None = (await api.get(url)).json().get("modifiedDate")
        return value

    assert await modified() is None
    emulator.clock.shift(60)
    before = format_date(emulator.clock())
    await api.put(url, json={"enabled": False})
    await api.put(url, json={"enabled": True})
    assert await modified() is None
    await api.put(url, json={"scopes": ["logs.read", "metrics.read"]})  # same set: no change
    await api.put(url, json={"name": "t"})  # same name: no change
    assert await modified() is None
    await api.put(url, json={"name": "renamed"})
    renamed = await modified()
    assert renamed is not None
    assert before <= renamed <= format_date(emulator.clock())
    emulator.clock.shift(60)
    await api.put(url, json={"scopes": ["logs.read"]})
    rescoped = await modified()
    assert rescoped is not None
    assert rescoped > renamed


async def test_owner_is_the_callers_owner(emulator: Emulator) -> None:
    alice = emulator.create_token("alice's", owner="alice@example.com")
    async with client(emulator, alice) as http:
        created = await create(http)
        assert (await http.get(f"{API}/{created['id']}")).json()["owner"] == "alice@example.com"


async def test_cannot_disable_own_token(emulator: Emulator, api: httpx.AsyncClient) -> None:
    own = emulator.admin_token.token_id
    response = await api.put(f"{API}/{own}", json={"enabled": False})
    assert response.status_code == 400
    assert "can't disable" in response.json()["error"]["message"]
    assert (await api.put(f"{API}/{own}", json={"enabled": True, "name": "still me"})).status_code == 204


async def test_cannot_delete_own_token(emulator: Emulator, api: httpx.AsyncClient) -> None:
    response = await api.delete(f"{API}/{emulator.admin_token.token_id}")
    assert response.status_code == 400
    assert "can't delete" in response.json()["error"]["message"]


async def test_delete_by_id(emulator: Emulator, api: httpx.AsyncClient) -> None:
    created = await create(api)
    response = await api.delete(f"{API}/{created['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert (await api.get(f"{API}/{created['id']}")).status_code == 404
    assert (await api.delete(f"{API}/{created['id']}")).status_code == 404


async def test_delete_by_secret(emulator: Emulator, api: httpx.AsyncClient) -> None:
    created = await create(api)
    # aiohttp's client logs no URLs, so the secret in this path reaches no log line.
    async with aiohttp.ClientSession(emulator.base_url, headers=headers(emulator.admin_token)) as session:
        async with session.delete(f"{API}/{created['token']}") as response:
            assert response.status == 204
        async with session.delete(f"{API}/{created['token']}") as response:
            assert response.status == 404
            assert not contains_secret(await response.text())
        async with session.delete(f"{API}/{emulator.admin_token.reveal()}") as response:
            assert response.status == 400  # own token, named by its secret
    assert (await api.get(f"{API}/{created['id']}")).status_code == 404


async def test_personal_access_token_deletes_only_its_owners_tokens(
    emulator: Emulator, api: httpx.AsyncClient
) -> None:
    admins = await create(api, name="admin's")
    pat = emulator.create_token("pat", owner="bob@example.com", personal_access_token=True)
    async with client(emulator, pat) as http:
        bobs = await create(http, name="bob's")
        assert (await http.delete(f"{API}/{admins['id']}")).status_code == 403
        assert (await http.delete(f"{API}/{bobs['id']}")).status_code == 204


async def test_personal_access_token_create(emulator: Emulator, api: httpx.AsyncClient) -> None:
    created = await create(api, personalAccessToken=True)
    assert (await api.get(f"{API}/{created['id']}")).json()["personalAccessToken"] is True


async def test_personal_access_tokens_can_be_disallowed() -> None:
    from apitoken_emulator import start_emulator

    async with start_emulator(validate_responses=True, allow_personal_access_tokens=False) as emulator:
        async with client(emulator) as api:
            response = await api.post(
                API, json={"name": "p", "scopes": ["metrics.read"], "personalAccessToken": True}
            )
            assert response.status_code == 400
            assert "personalAccessToken" in response.text
        assert not emulator.contract_violations


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_unknown_id_is_404(api: httpx.AsyncClient, method: str) -> None:
    body = {"name": "x"} if method == "PUT" else None
    response = await api.request(method, f"{API}/dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX", json=body)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == 404


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_malformed_id_is_400(api: httpx.AsyncClient, method: str) -> None:
    body = {"name": "x"} if method == "PUT" else None
    response = await api.request(method, f"{API}/not-an-id", json=body)
    assert response.status_code == 400
    violation = response.json()["error"]["constraintViolations"][0]
    assert violation["path"] == "id"
    assert violation["parameterLocation"] == "PATH"
    assert "not-an-id" not in response.text


async def test_lookup(emulator: Emulator, api: httpx.AsyncClient) -> None:
    created = await create(api, name="looked up")
    body = (await api.post(f"{API}/lookup", json={"token": created["token"]})).json()
    assert body["id"] == created["id"]
    assert body["name"] == "looked up"
    disabled = emulator.create_token("off", enabled=False)
    assert (await api.post(f"{API}/lookup", json={"token": disabled.reveal()})).json()["enabled"] is False
    token = created["token"]
    other = token[:-1] + ("1" if token.endswith("0") else "0")  # another secret part, never the same one
    unknown = await api.post(f"{API}/lookup", json={"token": other})
    assert unknown.status_code == 404
    assert not contains_secret(unknown.text)


async def test_unknown_paths_and_methods_answer_with_the_envelope(api: httpx.AsyncClient) -> None:
    missing = await api.get("/api/v2/somethingElse")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == 404
    wrong = await api.patch(API)
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == 405


async def test_created_expiry_uses_the_emulator_clock() -> None:
    from apitoken_emulator import start_emulator

    fixed = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    async with (
        start_emulator(validate_responses=True, clock=lambda: fixed) as emulator,
        client(emulator) as api,
    ):
        created = await create(api, expirationDate="now+1h")
        assert created["expirationDate"] == "2030-06-01T13:00:00.000Z"
        rejected = await api.post(
            API, json={"name": "n", "scopes": ["metrics.read"], "expirationDate": "2030-06-01T11:00:00Z"}
        )
        assert rejected.status_code == 400
