"""The errors the Dynatrace client raises, translated once at the HTTP boundary.

    DynatraceError                  anything the client raises; `attempts` says how many requests were made
    ├── ConfigurationError          a bad base URL or argument (also a ValueError); never retried
    ├── DynatraceTransportError     no HTTP response: refused, reset, timed out; `request_sent` says whether
    │                               the request may have reached the server
    ├── CreateOutcomeUnknown        a create may have reached the server but no usable answer came back;
    │                               carries the create request so the caller can reconcile by listing
    └── DynatraceApiError           the server answered with an error: `status`, `message`,
        │                           `constraint_violations`, `operation`
        ├── InvalidRequest          400, with the constraint violations
        ├── Unauthorized            401: the calling token is unknown, disabled or expired
        ├── Forbidden               403: `missing_scope` when the message names one
        ├── NotFound                404
        ├── Throttled               429: `retry_after` seconds when the server said
        ├── ServiceUnavailable      5xx (500 included; only 502/503/504 are retried)
        └── UnexpectedResponse      an undocumented status or body (3xx, 405, a 200 that is not JSON)

Every message is built from text the server or the network produced, so each goes through
`mask_secrets` (and the client's own scrubber, which also knows the literal secrets it holds) and is
trimmed to `TEXT_ERROR_MAX_SIZE`, as kopf trims Kubernetes error bodies. Bodies may be the documented
envelope, a JSON array of envelopes, or not JSON at all (an HTML page from a proxy).

No I/O here.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any

import pydantic

from apitoken_operator.dynatrace.models import ApiTokenCreate, ConstraintViolation, ErrorDetail
from apitoken_operator.dynatrace.secrets import mask_secrets

__all__ = [
    "TEXT_ERROR_MAX_SIZE",
    "ConfigurationError",
    "CreateOutcomeUnknown",
    "DynatraceApiError",
    "DynatraceError",
    "DynatraceTransportError",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "ServiceUnavailable",
    "Throttled",
    "Unauthorized",
    "UnexpectedResponse",
    "error_from_response",
    "parse_error_body",
    "parse_missing_scopes",
    "trim",
]

#: The longest server- or network-provided text copied into a message (kopf's TEXT_ERROR_MAX_SIZE).
TEXT_ERROR_MAX_SIZE = 256

Scrubber = Callable[[str], str]


class DynatraceError(Exception):
    """Base of everything the client raises."""

    #: Requests made for the failed call, retries included.
    attempts: int = 1


class ConfigurationError(DynatraceError, ValueError):
    """A base URL or argument that cannot be right; retrying will not help."""


class DynatraceTransportError(DynatraceError):
    """No HTTP response was read: the connection was refused, reset or timed out."""

    def __init__(self, message: str, *, operation: str, request_sent: bool, timeout: bool = False) -> None:
        super().__init__(message)
        self.operation = operation
        #: False only when the failure happened before any byte of the request left (connect, pool wait).
        self.request_sent = request_sent
        self.timeout = timeout


class CreateOutcomeUnknown(DynatraceError):
    """A create may have made a token or not: it may have reached the server, but no usable answer came back.

    Creates are not idempotent (names are not unique), so the client never retries one after its
    request may have been sent. The caller reconciles: list tokens by name (and owner) and adopt or
    delete what it finds. The secret of a token made this way is lost for good.
    """

    def __init__(self, reason: str, *, request: ApiTokenCreate) -> None:
        self.request = request
        self.reason = reason
        super().__init__(
            f"the create of token {trim(request.name, limit=80)!r} may or may not have made a token "
            f"({reason}); list tokens by that name to find out"
        )

    @property
    def name(self) -> str:
        return self.request.name


class DynatraceApiError(DynatraceError):
    """The server answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        operation: str,
        constraint_violations: Sequence[ConstraintViolation] = (),
    ) -> None:
        self.status = status
        #: The server's message, masked and trimmed ("" when it sent none).
        self.message = message
        self.operation = operation
        self.constraint_violations = tuple(constraint_violations)
        super().__init__(
            _describe(
                status=status, operation=operation, message=message, violations=self.constraint_violations
            )
        )


class InvalidRequest(DynatraceApiError):
    """400: the request broke a constraint; `constraint_violations` says which."""


class Unauthorized(DynatraceApiError):
    """401: the calling token is missing, unknown, disabled or expired."""


class Forbidden(DynatraceApiError):
    """403: the calling token lacks a scope (`missing_scopes`, any one would do) or the action is denied."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.missing_scopes = parse_missing_scopes(message)

    @property
    def missing_scope(self) -> str | None:
        return self.missing_scopes[0] if self.missing_scopes else None


class NotFound(DynatraceApiError):
    """404: no such token. After a retried delete this can mean the first attempt already deleted it."""


class Throttled(DynatraceApiError):
    """429: the environment's request pool is full."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        #: Seconds the server asked to wait (Retry-After or X-RateLimit-Reset), None when it did not say.
        self.retry_after = retry_after


class ServiceUnavailable(DynatraceApiError):
    """5xx: the server or a proxy in front of it failed."""


class UnexpectedResponse(DynatraceApiError):
    """A status or body the API does not document: a redirect, a 405, a success body that does not parse."""


_BY_STATUS: dict[int, type[DynatraceApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    429: Throttled,
}


def error_from_response(
    *,
    status: int,
    body: bytes,
    operation: str,
    retry_after: float | None = None,
    scrub: Scrubber = mask_secrets,
    envelope_only: bool = False,
) -> DynatraceApiError:
    """The typed error for an error response; `scrub` removes secrets before anything is kept.

    `envelope_only` keeps a message only from Dynatrace's documented error envelope and drops any other
    body (HTML, plain text, other JSON): for URLs a namespace user chose, whose answers must not be
    echoed into status and Events. The status code is always kept.
    """
    message, violations = parse_error_body(body, envelope_only=envelope_only)
    message = trim(scrub(message))
    violations = [
        violation.model_copy(update={"message": trim(scrub(violation.message))})
        if violation.message is not None
        else violation
        for violation in violations
    ]
    kwargs: dict[str, Any] = {"status": status, "operation": operation, "constraint_violations": violations}
    if status == 429:
        return Throttled(message, retry_after=retry_after, **kwargs)
    if status >= 500:
        return ServiceUnavailable(message, **kwargs)
    return _BY_STATUS.get(status, UnexpectedResponse)(message, **kwargs)


def parse_error_body(body: bytes, *, envelope_only: bool = False) -> tuple[str, list[ConstraintViolation]]:
    """The message and violations of an error body: an envelope, a JSON array of envelopes, or any text.

    With `envelope_only`, only `{"error": {...}}` envelopes count and anything else gives no message.
    The message is neither masked nor trimmed here: the caller does both, in that order, so that
    trimming can never cut a token in half and hide it from the mask.
    """
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return "", []
    try:
        document = json.loads(text)
    except ValueError:
        return ("", []) if envelope_only else (_text_of_markup(text), [])
    details = [
        detail
        for item in (document if isinstance(document, list) else [document])
        if (not envelope_only or (isinstance(item, dict) and isinstance(item.get("error"), dict)))
        and (detail := _detail(item))
    ]
    if not details:
        return ("", []) if envelope_only else (_collapse(text), [])
    messages = [detail.message for detail in details if detail.message]
    violations = [violation for detail in details for violation in detail.constraint_violations or ()]
    return "; ".join(dict.fromkeys(messages)), violations


def _detail(item: object) -> ErrorDetail | None:
    """The `error` of an envelope, or the object itself when a proxy sent `{"code", "message"}` bare."""
    if not isinstance(item, dict):
        return None
    candidate = item.get("error", item)
    if isinstance(candidate, str):
        candidate = {"message": candidate}
    if not isinstance(candidate, dict):
        return None
    try:
        detail = ErrorDetail.model_validate(candidate)
    except pydantic.ValidationError:
        return None
    return detail if detail.message or detail.constraint_violations else None


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def _text_of_markup(text: str) -> str:
    """What a person would read first in an HTML error page: its title, else its text; plain text as is."""
    if "<" not in text:
        return _collapse(text)
    if (title := _TITLE.search(text)) and title.group(1).strip():
        return _collapse(html.unescape(title.group(1)))
    return _collapse(html.unescape(_TAG.sub(" ", _SCRIPT.sub(" ", text))))


def _collapse(text: str) -> str:
    return " ".join(text.split())


def trim(text: str, *, limit: int = TEXT_ERROR_MAX_SIZE) -> str:
    """Whitespace collapsed and cut to `limit` characters. Mask before trimming, never after."""
    collapsed = _collapse(text)
    return collapsed if len(collapsed) <= limit else collapsed[: limit - 3] + "..."


_MISSING_SCOPE = re.compile(r"missing\b.*?\bscopes?\b(?P<rest>.*)", re.IGNORECASE | re.DOTALL)
_SCOPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*(?:[.:][A-Za-z0-9_-]+)*")
_LEGACY_SCOPE = re.compile(r"^[A-Z][a-z0-9]*[A-Z][A-Za-z0-9]*$")
_NOT_SCOPES = frozenset(
    {"use", "one", "of", "or", "and", "any", "the", "required", "scope", "scopes", "following"}
)


def parse_missing_scopes(message: str) -> tuple[str, ...]:
    """The scopes a 403 message says are missing, in order; empty when it names none.

    Dynatrace writes `Token is missing required scope. Use one of: apiTokens.write (Write API tokens)`;
    quoted forms (`missing scope 'apiTokens.read'`) and comma lists are read too. Parenthesised
    descriptions are skipped.
    """
    match = _MISSING_SCOPE.search(message)
    if not match:
        return ()
    rest = re.sub(r"\([^)]*\)", " ", match["rest"])
    found: list[str] = []
    for name in _SCOPE_NAME.findall(rest):
        if name.lower() in _NOT_SCOPES:
            continue
        if "." not in name and ":" not in name and not _LEGACY_SCOPE.match(name):
            break  # prose, not a scope: scopes are dotted (apiTokens.read) or legacy CamelCase (ReadConfig)
        found.append(name)
    return tuple(dict.fromkeys(found))


def _describe(*, status: int, operation: str, message: str, violations: Sequence[ConstraintViolation]) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    text = f"{operation} failed with {status} {phrase}"
    if message:
        text += f": {message}"
    if violations:
        shown = "; ".join(_violation(violation) for violation in violations[:5])
        more = f" and {len(violations) - 5} more" if len(violations) > 5 else ""
        text += f" [{trim(shown)}{more}]"
    return text


def _violation(violation: ConstraintViolation) -> str:
    where = violation.path or violation.parameter_location or "request"
    return f"{where}: {violation.message or 'invalid'}"
