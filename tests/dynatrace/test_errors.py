"""Error bodies in every shape the client may meet, and the typed errors built from them."""

from __future__ import annotations

import json
import random
import string

import pytest

from apitoken_operator.dynatrace import errors
from apitoken_operator.dynatrace.models import ApiTokenCreate

_ALPHABET = string.ascii_uppercase + string.digits
#: made at run time, so that any full token in the repository or in output is a leak
TOKEN_ID = "dt0c01." + "".join(random.choices(_ALPHABET, k=24))
SECRET = TOKEN_ID + "." + "".join(random.choices(_ALPHABET, k=64))


def envelope(code: int, message: str, violations: list[dict[str, str]] | None = None) -> dict[str, object]:
    error: dict[str, object] = {"code": code, "message": message}
    if violations is not None:
        error["constraintViolations"] = violations
    return {"error": error}


BODIES = {
    "envelope": (json.dumps(envelope(400, "Constraints violated.")), "Constraints violated.", 0),
    "envelope with violations": (
        json.dumps(
            envelope(
                400,
                "Constraints violated.",
                [{"path": "name", "message": "must not be blank", "parameterLocation": "PAYLOAD_BODY"}],
            )
        ),
        "Constraints violated.",
        1,
    ),
    "array of envelopes": (
        json.dumps(
            [envelope(400, "first problem", [{"path": "a", "message": "x"}]), envelope(400, "second problem")]
        ),
        "first problem; second problem",
        1,
    ),
    "array with a repeated message": (
        json.dumps([envelope(503, "busy"), envelope(503, "busy")]),
        "busy",
        0,
    ),
    "bare detail without envelope": (json.dumps({"code": 404, "message": "not here"}), "not here", 0),
    "error as a string": (json.dumps({"error": "quota exceeded"}), "quota exceeded", 0),
    "html page with title": (
        "<html><head><title>502 Bad Gateway</title></head>"
        "<body><h1>502 Bad Gateway</h1><hr>nginx</body></html>",
        "502 Bad Gateway",
        0,
    ),
    "html page without title": (
        "<html><body><script>var x = 1;</script><p>Service &amp; gateway\n  down</p></body></html>",
        "Service & gateway down",
        0,
    ),
    "plain text": ("upstream connect error or disconnect/reset before headers", "upstream connect error", 0),
    "empty body": ("", "", 0),
    "json that is not an error": (json.dumps({"unexpected": True}), '{"unexpected": true}', 0),
    "json scalar": ("42", "42", 0),
}


@pytest.mark.parametrize(("body", "message", "violations"), BODIES.values(), ids=BODIES.keys())
def test_parse_error_body(body: str, message: str, violations: int) -> None:
    parsed_message, parsed_violations = errors.parse_error_body(body.encode())
    assert parsed_message.startswith(message)
    assert len(parsed_violations) == violations


STATUSES = {
    400: errors.InvalidRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    429: errors.Throttled,
    500: errors.ServiceUnavailable,
    502: errors.ServiceUnavailable,
    503: errors.ServiceUnavailable,
    504: errors.ServiceUnavailable,
    302: errors.UnexpectedResponse,
    405: errors.UnexpectedResponse,
    409: errors.UnexpectedResponse,
}


@pytest.mark.parametrize(("status", "kind"), STATUSES.items(), ids=[str(status) for status in STATUSES])
def test_status_maps_to_type(status: int, kind: type[errors.DynatraceApiError]) -> None:
    error = errors.error_from_response(
        status=status, body=json.dumps(envelope(status, "something")).encode(), operation="GET /apiTokens"
    )
    assert type(error) is kind
    assert error.status == status
    assert error.message == "something"
    assert str(error).startswith(f"GET /apiTokens failed with {status} ")


def test_invalid_request_lists_violations() -> None:
    body = envelope(
        400,
        "Constraints violated.",
        [
            {"path": "name", "message": "must not be blank", "parameterLocation": "PAYLOAD_BODY"},
            {"path": "scopes", "message": "unknown scope foo.bar", "parameterLocation": "PAYLOAD_BODY"},
        ],
    )
    error = errors.error_from_response(
        status=400, body=json.dumps(body).encode(), operation="POST /apiTokens"
    )
    assert isinstance(error, errors.InvalidRequest)
    assert [violation.path for violation in error.constraint_violations] == ["name", "scopes"]
    assert "name: must not be blank" in str(error)
    assert "scopes: unknown scope foo.bar" in str(error)


def test_throttled_keeps_retry_after() -> None:
    error = errors.error_from_response(status=429, body=b"", operation="GET /apiTokens", retry_after=2.5)
    assert isinstance(error, errors.Throttled)
    assert error.retry_after == 2.5


def test_messages_are_masked_then_trimmed() -> None:
    # The secret sits right at the trim boundary: masking first means no part of it survives.
    message = "x" * 200 + " token " + SECRET + " is invalid " + "y" * 300
    error = errors.error_from_response(
        status=400, body=json.dumps(envelope(400, message)).encode(), operation="POST /apiTokens/lookup"
    )
    assert SECRET not in str(error)
    assert SECRET[40:60] not in str(error)
    assert TOKEN_ID in error.message
    assert len(error.message) <= errors.TEXT_ERROR_MAX_SIZE


def test_violation_messages_are_masked() -> None:
    body = envelope(400, "bad", [{"path": "token", "message": f"{SECRET} is malformed"}])
    error = errors.error_from_response(
        status=400, body=json.dumps(body).encode(), operation="POST /apiTokens/lookup"
    )
    assert SECRET not in str(error)
    assert SECRET not in repr(error.constraint_violations)


def test_custom_scrubber_is_applied() -> None:
    error = errors.error_from_response(
        status=401,
        body=b'{"error": {"code": 401, "message": "token not-a-real-format-secret is unknown"}}',
        operation="GET /apiTokens",
        scrub=lambda text: text.replace("not-a-real-format-secret", "***"),
    )
    assert "not-a-real-format-secret" not in str(error)


MISSING_SCOPES = {
    "dynatrace wording": (
        "Token is missing required scope. Use one of: apiTokens.write (Write API tokens)",
        ("apiTokens.write",),
    ),
    "several alternatives": (
        "Token is missing required scope. Use one of: apiTokens.read (Read API tokens), apiTokens.write",
        ("apiTokens.read", "apiTokens.write"),
    ),
    "quoted": ("Missing scope 'apiTokens.read' for this operation", ("apiTokens.read",)),
    "colon list": ("missing scopes: apiTokens.read, apiTokens.write.", ("apiTokens.read", "apiTokens.write")),
    "legacy camel case": ("Token is missing required scope ReadConfig", ("ReadConfig",)),
    "prose after the word scope": ("Token is missing required scope. Please check the token.", ()),
    "no scope named": ("Access denied", ()),
}


@pytest.mark.parametrize(("message", "scopes"), MISSING_SCOPES.values(), ids=MISSING_SCOPES.keys())
def test_parse_missing_scopes(message: str, scopes: tuple[str, ...]) -> None:
    assert errors.parse_missing_scopes(message) == scopes


def test_forbidden_names_the_missing_scope() -> None:
    body = envelope(403, "Token is missing required scope. Use one of: apiTokens.write (Write API tokens)")
    error = errors.error_from_response(
        status=403, body=json.dumps(body).encode(), operation="POST /apiTokens"
    )
    assert isinstance(error, errors.Forbidden)
    assert error.missing_scope == "apiTokens.write"


def test_forbidden_without_scope() -> None:
    error = errors.error_from_response(status=403, body=b"<html>Forbidden</html>", operation="GET /apiTokens")
    assert isinstance(error, errors.Forbidden)
    assert error.missing_scope is None


def test_create_outcome_unknown_carries_the_request() -> None:
    request = ApiTokenCreate(name="team-a/ingest", scopes=["metrics.ingest"])
    error = errors.CreateOutcomeUnknown("read timed out", request=request)
    assert error.request is request
    assert error.name == "team-a/ingest"
    assert "team-a/ingest" in str(error)
    assert "read timed out" in str(error)


def test_trim() -> None:
    assert errors.trim("  a \n b  ") == "a b"
    assert len(errors.trim("z" * 1000)) == errors.TEXT_ERROR_MAX_SIZE
    assert errors.trim("z" * 1000).endswith("...")
