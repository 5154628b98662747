"""Errors as Dynatrace writes them: `{"error": {"code", "message", "constraintViolations": [...]}}`.

Handlers raise `ApiError`; the app's middleware turns it into the response. Messages never quote a
secret: a value that came from the client is echoed only when it is known to be safe (a token id).
`location` is left out of a violation: the published schema types it as a string and the emulator has
nothing meaningful to put there (the real API sends null, a gap of the document).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from apitoken_operator.dynatrace.models import ParameterLocation

__all__ = ["ApiError", "Violation", "json_response", "json_text_response"]

CONTENT_TYPE = "application/json"


def json_response(status: int, body: Any, *, headers: Mapping[str, str] | None = None) -> web.Response:
    """A compact JSON response with Dynatrace's content type (`application/json; charset=utf-8`)."""
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
        content_type=CONTENT_TYPE,
        charset="utf-8",
        headers=headers,
    )


def json_text_response(status: int, text: str) -> web.Response:
    """Like `json_response`, for a body already encoded as JSON text."""
    return web.Response(status=status, body=text.encode("utf-8"), content_type=CONTENT_TYPE, charset="utf-8")


@dataclass(frozen=True)
class Violation:
    path: str
    message: str
    location: ParameterLocation = ParameterLocation.PAYLOAD_BODY

    def wire(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message, "parameterLocation": self.location.value}


class ApiError(Exception):
    """An error response; `violations` become `constraintViolations`."""

    def __init__(
        self,
        status: int,
        message: str,
        violations: Sequence[Violation] = (),
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.violations = tuple(violations)
        self.headers = dict(headers or {})

    @classmethod
    def invalid(cls, violations: Sequence[Violation]) -> ApiError:
        return cls(400, "Constraints violated.", violations)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.status, "message": self.message}
        if self.violations:
            error["constraintViolations"] = [violation.wire() for violation in self.violations]
        return {"error": error}

    def response(self) -> web.Response:
        return json_response(self.status, self.body(), headers=self.headers)
