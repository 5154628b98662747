"""Checks every Tokens API response against Dynatrace's published OpenAPI document.

Enabled by `validate_responses=True` (or APITOKEN_EMULATOR_VALIDATE=1 for the CLI). A response that does
not fit is recorded as a `ContractViolation` and replaced by a 500, so nothing passes silently.

Deliberate departures from the document, all gaps it admits to (see shared/dynatrace/tokens-api.md):
- the `scopes` items' enum is treated as open: Dynatrace adds scopes without an API version change,
  and the document (1.254) is older than the scope list;
- `ApiTokenList.nextPageKey` is nullable: its description says null on the last page, its type says
  string;
- statuses the document leaves out but every operation can give (401, 403, 429, 5xx), 404 on PUT and
  400 on a malformed lookup body are allowed, and their bodies must be the `ErrorEnvelope`; a 5xx may
  also be a non-JSON gateway page.
Everything else is checked as written. `jsonschema` is imported lazily: only a checking emulator needs it.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from typing import Any

from apitoken_emulator.catalog import load_openapi
from apitoken_operator.dynatrace.secrets import mask_secrets

__all__ = ["ContractChecker", "ContractViolation"]

#: operation -> (path, method) in the OpenAPI document.
_OPERATIONS = {
    "list": ("/apiTokens", "get"),
    "create": ("/apiTokens", "post"),
    "get": ("/apiTokens/{id}", "get"),
    "update": ("/apiTokens/{id}", "put"),
    "delete": ("/apiTokens/{id}", "delete"),
    "lookup": ("/apiTokens/lookup", "post"),
}
_UNDOCUMENTED_EVERYWHERE = {401, 403, 429, 500, 502, 503, 504}
#: 404 on PUT of an unknown id (tokens-api.md); 400 on lookup with a body that is not `ApiTokenSecret`
#: (the document lists only 200 and 404 there, but a malformed body cannot be either).
_UNDOCUMENTED_BY_OPERATION = {"update": {404}, "lookup": {400}}
_SCOPE_SCHEMAS = ("ApiToken", "ApiTokenCreate", "ApiTokenUpdate")


@dataclass(frozen=True)
class ContractViolation:
    operation: str
    method: str
    path: str
    status: int
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "message": self.message,
        }


def _patched_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = copy.deepcopy(load_openapi()["components"]["schemas"])
    for name in _SCOPE_SCHEMAS:
        schemas[name]["properties"]["scopes"]["items"].pop("enum", None)  # open enum: see module docstring
    schemas["ApiTokenList"]["properties"]["nextPageKey"]["type"] = ["string", "null"]  # null on last page
    return schemas


class ContractChecker:
    """Validates bodies by operation and status; keeps the violations it found."""

    def __init__(self) -> None:
        from jsonschema import Draft7Validator  # type: ignore[import-untyped]  # it ships no stubs

        document = load_openapi()
        schemas = _patched_schemas()
        self._validators: dict[str, Any] = {}

        def validator(name: str) -> Any:
            if name not in self._validators:
                root = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}}
                self._validators[name] = Draft7Validator(root)
            return self._validators[name]

        #: (operation, status) -> schema validator, or None for "no body".
        self._expected: dict[tuple[str, int], Any] = {}
        for operation, (path, method) in _OPERATIONS.items():
            for status_text, response in document["paths"][path][method]["responses"].items():
                content: dict[str, Any] = response.get("content") or {}
                schema = next((media.get("schema") for media in content.values()), None)
                status = int(status_text)
                if schema is None:
                    self._expected[operation, status] = validator("ErrorEnvelope") if status >= 400 else None
                else:
                    self._expected[operation, status] = validator(schema["$ref"].rsplit("/", 1)[1])
            for status in _UNDOCUMENTED_EVERYWHERE | _UNDOCUMENTED_BY_OPERATION.get(operation, set()):
                self._expected.setdefault((operation, status), validator("ErrorEnvelope"))
        self._envelope = validator("ErrorEnvelope")
        self._lock = threading.Lock()
        self.violations: list[ContractViolation] = []

    def problem(self, operation: str, status: int, content_type: str, body: bytes) -> str | None:
        """Why this response breaks the contract, or None when it fits."""
        if operation in _OPERATIONS:
            if (operation, status) not in self._expected:
                return f"status {status} is not a documented answer of {operation}"
            validator = self._expected[operation, status]
        else:
            validator = self._envelope if status >= 400 else None
            if validator is None:
                return f"status {status} for a path outside the API"
        if validator is None:
            return None if not body else f"status {status} must have no body"
        if content_type != "application/json":
            if status >= 500:
                return None  # a gateway's page: robust clients must cope, the contract cannot speak for it
            return f"the body is {content_type or 'untyped'}, not application/json"
        try:
            instance = json.loads(body)
        except ValueError as error:
            return f"the body is not JSON: {error}"
        errors = sorted(validator.iter_errors(instance), key=lambda item: list(item.absolute_path))
        if not errors:
            return None
        first = errors[0]
        where = "/".join(str(part) for part in first.absolute_path) or "<body>"
        return f"{where}: {first.message}"

    def record(self, violation: ContractViolation) -> None:
        masked = ContractViolation(
            operation=violation.operation,
            method=violation.method,
            path=mask_secrets(violation.path),
            status=violation.status,
            message=mask_secrets(violation.message),
        )
        with self._lock:
            self.violations.append(masked)

    def clear(self) -> None:
        with self._lock:
            self.violations.clear()
