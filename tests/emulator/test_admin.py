"""The admin endpoint under /_emulator: faults, counters, clock, tokens and contract violations over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from apitoken_emulator import Emulator
from apitoken_operator.dynatrace.dates import parse_date
from apitoken_operator.dynatrace.secrets import TokenSecret, contains_secret
from tests.emulator.helpers import API, client, create


@pytest.fixture
async def admin(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{emulator.base_url}/_emulator") as http:
        yield http


async def test_health(admin: httpx.AsyncClient) -> None:
    assert (await admin.get("/health")).json() == {"status": "ok", "tokens": 1}


async def test_faults_get_put_patch_delete(
    emulator: Emulator, admin: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    assert (await admin.get("/faults")).json()["rate_limit_ratio"] == 0.0
    put = await admin.put("/faults", json={"rate_limit_ratio": 1, "retry_after": 4, "operations": ["list"]})
    assert put.status_code == 200
    assert put.json()["operations"] == ["list"]
    response = await api.get(API)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "4"

    patched = (await admin.patch("/faults", json={"latency": 0.01})).json()
    assert patched["rate_limit_ratio"] == 1.0
    assert patched["latency"] == 0.01
    replaced = (await admin.put("/faults", json={"latency": 0.02})).json()
    assert replaced["rate_limit_ratio"] == 0.0  # PUT replaces: unspecified settings get their defaults
    assert emulator.faults.config.latency == 0.02

    assert (await admin.delete("/faults")).json()["latency"] == 0.0
    assert (await api.get(API)).status_code == 200


@pytest.mark.parametrize(
    "body", [{"rate_limit_ratio": 2}, {"bogus": 1}, {"outage": "never"}, {"operations": "list"}, [1]]
)
async def test_invalid_faults_are_400(admin: httpx.AsyncClient, body: object) -> None:
    response = await admin.put("/faults", json=body)
    assert response.status_code == 400
    assert "error" in response.json()


async def test_outage_over_the_admin_endpoint(admin: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    await admin.patch("/faults", json={"outage": "unavailable"})
    assert (await api.get(API)).status_code == 503
    await admin.patch("/faults", json={"outage": "off"})
    assert (await api.get(API)).status_code == 200


async def test_counters(admin: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    await api.get(API)
    await api.get(f"{API}/dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX")
    await admin.get("/health")  # admin calls are not counted
    assert (await admin.get("/counters")).json() == {"list": {"200": 1}, "get": {"404": 1}}
    assert (await admin.delete("/counters")).status_code == 200
    assert (await admin.get("/counters")).json() == {}


async def test_clock(emulator: Emulator, admin: httpx.AsyncClient) -> None:
    before = emulator.clock()
    state = (await admin.post("/clock", json={"advance_seconds": 86400})).json()
    assert state["offset_seconds"] == 86400
    assert (parse_date(state["now"], now=before) - before).days == 1
    state = (await admin.post("/clock", json={"advance_seconds": -3600})).json()
    assert state["offset_seconds"] == 82800
    assert (await admin.put("/clock", json={"offset_seconds": 0})).json()["offset_seconds"] == 0
    assert (await admin.get("/clock")).json()["offset_seconds"] == 0
    assert (await admin.post("/clock", json={"advance_seconds": "1d"})).status_code == 400
    assert (await admin.post("/clock", json={"advance_seconds": 1e300})).status_code == 400


async def test_clock_shift_expires_tokens(emulator: Emulator, admin: httpx.AsyncClient) -> None:
    async with client(emulator) as api:
        created = await create(api, scopes=["apiTokens.read"], expirationDate="now+1d")
    await admin.post("/clock", json={"advance_seconds": 2 * 86400})
    async with client(emulator, TokenSecret(created["token"])) as http:
        assert (await http.get(API)).status_code == 401


async def test_tokens_show_metadata_without_secrets(emulator: Emulator, admin: httpx.AsyncClient) -> None:
    emulator.create_token("second", ["metrics.read"])
    response = await admin.get("/tokens")
    tokens = response.json()["tokens"]
    assert [token["name"] for token in tokens] == ["emulator-admin", "second"]
    assert tokens[1]["scopes"] == ["metrics.read"]
    assert not contains_secret(response.text)
    assert "secretSha256" not in response.text


async def test_contract_violations_endpoint(admin: httpx.AsyncClient) -> None:
    assert (await admin.get("/contract-violations")).json() == {"enabled": True, "violations": []}
    assert (await admin.delete("/contract-violations")).status_code == 200
