"""The contract check: it passes conforming responses, catches broken ones, and its data matches shared/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from apitoken_emulator import start_emulator
from apitoken_emulator.contract import ContractChecker
from apitoken_emulator.tokens import TokenRecord
from apitoken_operator.dynatrace.secrets import TOKEN_PATTERN, mask_secrets
from tests.emulator.helpers import API, client

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "dynatrace"
PACKAGE_DATA = REPO / "dev" / "apitoken_emulator" / "data"


@pytest.mark.needs_shared  # deselected by tests/conftest.py when ../shared is absent (a user's clone)
@pytest.mark.parametrize("name", ["apitokens-openapi.json", "scopes.json"])
def test_package_data_equals_shared_copy(name: str) -> None:
    original = SHARED / name
    assert original.is_file(), (
        f"{original} is missing: the shared reference files must sit beside the repository "
        "(../shared/dynatrace/), as they do in every session and in CI"
    )
    # Dynatrace's own example token is masked in the copy: no full token is committed, so that any one
    # in the tests' output is a leak.
    expected = mask_secrets(original.read_text(encoding="utf-8"))
    assert (PACKAGE_DATA / name).read_text(encoding="utf-8") == expected, (
        f"{PACKAGE_DATA / name} differs from {original}: copy the shared file over it "
        "(masked: mask_secrets(text), as this test does)"
    )
    assert not TOKEN_PATTERN.search(expected)


@pytest.fixture(scope="module")
def checker() -> ContractChecker:
    return ContractChecker()


def _problem(checker: ContractChecker, operation: str, status: int, body: Any) -> str | None:
    raw = b"" if body is None else json.dumps(body).encode()
    return checker.problem(operation, status, "application/json" if raw else "", raw)


@pytest.mark.parametrize(
    ("operation", "status", "body"),
    [
        ("list", 200, {"totalCount": 0, "pageSize": 200, "nextPageKey": None, "apiTokens": []}),
        ("get", 200, {"id": "x", "scopes": ["a.scope.from.the.future"]}),
        ("create", 201, {"id": "x", "token": "y"}),
        ("update", 204, None),
        ("update", 404, {"error": {"code": 404, "message": "gone"}}),
        ("lookup", 400, {"error": {"code": 400, "message": "bad"}}),
        ("delete", 429, {"error": {"code": 429}}),
        ("unknown", 404, {"error": {"code": 404}}),
    ],
)
def test_conforming_bodies_pass(checker: ContractChecker, operation: str, status: int, body: Any) -> None:
    assert _problem(checker, operation, status, body) is None


@pytest.mark.parametrize(
    ("operation", "status", "body", "fragment"),
    [
        ("list", 200, {"apiTokens": []}, "'totalCount' is a required property"),
        ("list", 200, {"totalCount": 0, "apiTokens": [{"enabled": "yes"}]}, "apiTokens/0/enabled"),
        ("get", 200, {"scopes": "metrics.read"}, "scopes"),
        ("create", 201, {"id": 5}, "id"),
        ("update", 204, {"unexpected": True}, "must have no body"),
        ("get", 409, {"error": {}}, "not a documented answer"),
        (
            "list",
            400,
            {"error": {"constraintViolations": [{"parameterLocation": "HEADER"}]}},
            "parameterLocation",
        ),
        ("list", 400, {"error": {"constraintViolations": [{"location": None}]}}, "location"),
    ],
)
def test_broken_bodies_are_caught(
    checker: ContractChecker, operation: str, status: int, body: Any, fragment: str
) -> None:
    problem = _problem(checker, operation, status, body)
    assert problem is not None
    assert fragment in problem


def test_non_json_bodies(checker: ContractChecker) -> None:
    assert checker.problem("get", 502, "text/html", b"<html></html>") is None  # a gateway's page
    assert checker.problem("get", 200, "text/plain", b"hello") is not None


async def test_a_broken_response_becomes_a_recorded_500(monkeypatch: pytest.MonkeyPatch) -> None:
    original = TokenRecord.wire

    def broken(self: TokenRecord) -> dict[str, Any]:
        return {**original(self), "enabled": "sometimes"}

    async with start_emulator(validate_responses=True) as emulator:
        monkeypatch.setattr(TokenRecord, "wire", broken)
        async with client(emulator) as api:
            response = await api.get(f"{API}/{emulator.admin_token.token_id}")
        assert response.status_code == 500
        assert "contract" in response.json()["error"]["message"]
        [violation] = emulator.contract_violations
        assert violation.operation == "get"
        assert violation.status == 200
        assert "enabled" in violation.message
        async with httpx.AsyncClient(base_url=emulator.base_url) as admin:
            listed = (await admin.get("/_emulator/contract-violations")).json()["violations"]
        assert listed == [violation.to_json()]


async def test_without_validation_nothing_is_recorded() -> None:
    async with start_emulator() as emulator:
        assert emulator.contract is None
        assert emulator.contract_violations == []
