"""Small helpers for talking to the emulator over real HTTP in tests."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import httpx

from apitoken_emulator import Emulator
from apitoken_operator.dynatrace.secrets import TokenSecret

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
API = "/api/v2/apiTokens"


def headers(token: TokenSecret) -> dict[str, str]:
    return {"Authorization": f"Api-Token {token.reveal()}"}


def client(emulator: Emulator, token: TokenSecret | None = None) -> httpx.AsyncClient:
    """An httpx client on the emulator authenticating with `token` (the admin token by default)."""
    return httpx.AsyncClient(
        base_url=emulator.base_url, headers=headers(token or emulator.admin_token), timeout=10.0
    )


async def create(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    """POST a token (name and scopes defaulted) and return the 201 body."""
    body.setdefault("name", "t")
    body.setdefault("scopes", ["metrics.read"])
    response = await api.post(API, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def violations(response: httpx.Response) -> dict[str, str]:
    """`{path: message}` of a 400's constraint violations."""
    assert response.status_code == 400, response.text
    return {
        item["path"]: item["message"] for item in response.json()["error"].get("constraintViolations", [])
    }


async def list_all(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """Every token, following nextPageKey."""
    tokens: list[dict[str, Any]] = []
    response = await api.get(API, params=params)
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        tokens.extend(page["apiTokens"])
        if page["nextPageKey"] is None:
            return tokens
        response = await api.get(API, params={"nextPageKey": page["nextPageKey"]})


async def eventually(predicate: Callable[[], object], *, seconds: float = 10.0) -> None:
    """Poll `predicate` on the test's loop until it holds (a state change, never a duration)."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - the emulator's state has no event to wait on
            await asyncio.sleep(0.005)
