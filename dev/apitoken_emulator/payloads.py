"""Validation of request bodies (create, update, lookup) into typed requests, or a 400 with violations.

All violations of a body are collected and reported together, as Dynatrace does. Choices where the
documentation is silent (see docs/emulator.md): unknown body properties are ignored (including
`enabled` on create: a new token is enabled); duplicate scopes are collapsed; a blank name is refused;
`expirationDate` and `personalAccessToken` in a PUT body are ignored, because the official Terraform
provider sends them on every update and the real API accepts those calls; `null` counts as absent for
optional properties. A legacy read-only scope cannot be added, but a PUT may keep one the token has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apitoken_emulator.catalog import ScopeCatalog
from apitoken_emulator.problems import ApiError, Violation
from apitoken_operator.dynatrace.dates import DateFormatError, parse_date

__all__ = [
    "CreateRequest",
    "UpdateRequest",
    "parse_create",
    "parse_json_object",
    "parse_lookup",
    "parse_update",
]

#: Properties of a PUT body that cannot change after creation; accepted and ignored.
IMMUTABLE_ON_UPDATE = ("expirationDate", "personalAccessToken")


@dataclass(frozen=True)
class CreateRequest:
    name: str
    scopes: tuple[str, ...]
    expiration_date: datetime | None
    personal_access_token: bool


@dataclass(frozen=True)
class UpdateRequest:
    name: str | None
    enabled: bool | None
    scopes: tuple[str, ...] | None
    #: Immutable properties that were sent and ignored (kept for tests and the emulator's log).
    ignored: tuple[str, ...]


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise ApiError.invalid([Violation("", "the request body is required")])
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(
            400, f"Could not parse the request body as JSON: {error.__class__.__name__}"
        ) from error
    if not isinstance(body, dict):
        raise ApiError.invalid([Violation("", "the request body must be a JSON object")])
    return body


def _name(body: dict[str, Any], violations: list[Violation], *, required: bool) -> str | None:
    value = body.get("name")
    if value is None:
        if required:
            violations.append(Violation("name", "must not be null"))
        return None
    if not isinstance(value, str):
        violations.append(Violation("name", "must be a string"))
        return None
    if not value.strip():
        violations.append(Violation("name", "must not be blank"))
        return None
    return value


def _scopes(
    body: dict[str, Any],
    violations: list[Violation],
    *,
    catalog: ScopeCatalog,
    required: bool,
    kept: tuple[str, ...] = (),
) -> tuple[str, ...] | None:
    value = body.get("scopes")
    if value is None:
        if required:
            violations.append(Violation("scopes", "must not be null"))
        return None
    if not isinstance(value, list):
        violations.append(Violation("scopes", "must be an array of scope names"))
        return None
    if not value:
        violations.append(Violation("scopes", "must not be empty"))
        return None
    before = len(violations)
    for index, scope in enumerate(value):
        if not isinstance(scope, str):
            violations.append(Violation(f"scopes[{index}]", "must be a string"))
        elif scope not in kept and (problem := catalog.problem(scope)) is not None:
            violations.append(Violation(f"scopes[{index}]", problem))
    if len(violations) > before:
        return None
    return tuple(dict.fromkeys(value))


def _boolean(body: dict[str, Any], key: str, violations: list[Violation]) -> bool | None:
    value = body.get(key)
    if value is None or isinstance(value, bool):
        return value
    violations.append(Violation(key, "must be true or false"))
    return None


def parse_create(body: dict[str, Any], *, catalog: ScopeCatalog, now: datetime) -> CreateRequest:
    violations: list[Violation] = []
    name = _name(body, violations, required=True)
    scopes = _scopes(body, violations, catalog=catalog, required=True)
    personal = _boolean(body, "personalAccessToken", violations)
    expiration: datetime | None = None
    raw_expiration = body.get("expirationDate")
    if raw_expiration is not None:
        if not isinstance(raw_expiration, str):
            violations.append(Violation("expirationDate", "must be a string"))
        else:
            try:
                expiration = parse_date(raw_expiration, now=now)
            except DateFormatError as error:
                violations.append(Violation("expirationDate", str(error)))
            else:
                if expiration <= now:
                    violations.append(Violation("expirationDate", "must be in the future"))
    if violations or name is None or scopes is None:
        raise ApiError.invalid(violations)
    return CreateRequest(
        name=name, scopes=scopes, expiration_date=expiration, personal_access_token=bool(personal)
    )


def parse_update(
    body: dict[str, Any], *, catalog: ScopeCatalog, current_scopes: tuple[str, ...]
) -> UpdateRequest:
    violations: list[Violation] = []
    name = _name(body, violations, required=False)
    scopes = _scopes(body, violations, catalog=catalog, required=False, kept=current_scopes)
    enabled = _boolean(body, "enabled", violations)
    if violations:
        raise ApiError.invalid(violations)
    ignored = tuple(key for key in IMMUTABLE_ON_UPDATE if key in body)
    return UpdateRequest(name=name, enabled=enabled, scopes=scopes, ignored=ignored)


def parse_lookup(body: dict[str, Any]) -> str:
    value = body.get("token")
    if not isinstance(value, str) or not value.strip():
        raise ApiError.invalid([Violation("token", "must be a non-empty string")])
    return value.strip()
