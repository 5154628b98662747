"""Personal access tokens as Dynatrace documents them: the environment setting, and an owner's view."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from apitoken_emulator import Emulator
from apitoken_operator.dynatrace.secrets import TokenSecret
from tests.emulator.helpers import API, client, create, list_all

BOB = "bob@example.com"
RW = ("apiTokens.read", "apiTokens.write")


@pytest.fixture
def pat(emulator: Emulator) -> TokenSecret:
    return emulator.create_token("bob's pat", RW, owner=BOB, personal_access_token=True)


@pytest.fixture
async def admin(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{emulator.base_url}/_emulator") as http:
        yield http


async def test_turning_the_setting_off_disables_existing_pats(emulator: Emulator, pat: TokenSecret) -> None:
    async with client(emulator, pat) as http:
        assert (await http.get(API)).status_code == 200
        used_before = emulator.record_of(pat).last_used_date  # type: ignore[union-attr]
        emulator.set_personal_access_tokens(False)
        response = await http.get(API)
        assert response.status_code == 401
        assert (
            "personal access tokens are disabled in this environment" in response.json()["error"]["message"]
        )
        assert pat.reveal() not in response.text
        # A failed authentication is not a use.
        assert emulator.record_of(pat).last_used_date == used_before  # type: ignore[union-attr]
        emulator.set_personal_access_tokens(True)
        assert (await http.get(API)).status_code == 200


async def test_creating_a_pat_while_off_is_a_400(emulator: Emulator, api: httpx.AsyncClient) -> None:
    emulator.set_personal_access_tokens(False)
    response = await api.post(
        API, json={"name": "p", "scopes": ["metrics.read"], "personalAccessToken": True}
    )
    assert response.status_code == 400
    assert (await api.get(API)).status_code == 200  # ordinary API tokens are unaffected


async def test_a_pat_sees_only_its_owners_tokens(emulator: Emulator, pat: TokenSecret) -> None:
    others = emulator.create_token("alice's", owner="alice@example.com")
    for index in range(120):
        emulator.create_token(f"bob-{index}", owner=BOB)
    async with client(emulator, pat) as http:
        listed = await list_all(http, pageSize=100, fields="+owner")
        assert {token["owner"] for token in listed} == {BOB}
        assert len(listed) == 121  # the pat itself and 120 more
        first = (await http.get(API, params={"pageSize": 100})).json()
        assert first["totalCount"] == 121
        missing = await http.get(f"{API}/{others.token_id}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == 404
        assert (await http.get(f"{API}/{emulator.admin_token.token_id}")).status_code == 404
        assert (await http.put(f"{API}/{others.token_id}", json={"name": "x"})).status_code == 403
        assert (await http.delete(f"{API}/{others.token_id}")).status_code == 403
        mine = await create(http, name="bob's new")
        assert (await http.get(f"{API}/{mine['id']}")).json()["owner"] == BOB
        assert (await http.put(f"{API}/{mine['id']}", json={"name": "renamed"})).status_code == 204
    # An API token (not personal) of the same owner still sees everything.
    api_token = emulator.create_token("bob's api token", RW, owner=BOB)
    async with client(emulator, api_token) as http:
        assert (await http.get(f"{API}/{others.token_id}")).status_code == 200


async def test_settings_over_the_admin_endpoint(
    emulator: Emulator, admin: httpx.AsyncClient, pat: TokenSecret
) -> None:
    assert (await admin.get("/settings")).json() == {"personal_access_tokens": True}
    off = await admin.put("/settings", json={"personalAccessTokens": False})
    assert off.json() == {"personal_access_tokens": False}
    assert emulator.allow_personal_access_tokens is False
    async with client(emulator, pat) as http:
        assert (await http.get(API)).status_code == 401
    on = await admin.patch("/settings", json={"personal_access_tokens": True})
    assert on.json() == {"personal_access_tokens": True}
    for bad in ({"personal_access_tokens": "no"}, {"bogus": True}, [1]):
        assert (await admin.put("/settings", json=bad)).status_code == 400
