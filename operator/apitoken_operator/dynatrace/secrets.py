"""Token secrets as a type that cannot leak, and log masking for anything shaped like one.

A Dynatrace token is `prefix.PUBLIC.SECRET`; `prefix.PUBLIC` is the token id and is safe to show. The
secret part must never reach logs, Events, status, annotations, exception messages or reprs, so the
full value lives only inside `TokenSecret` and leaves it only through `reveal()`.

No I/O here.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

#: A full token: prefix, 24-character public part, 64-character secret part. No word boundaries: a
#: token glued to other text ("Api-Token" + token, "token_" + token) must still be found and masked.
TOKEN_PATTERN = re.compile(r"(dt0[a-zA-Z][0-9]{2}\.[A-Z0-9]{24})\.[A-Z0-9]{64}")
#: A token id: prefix and public part only (use with fullmatch).
TOKEN_ID_PATTERN = re.compile(r"dt0[a-zA-Z][0-9]{2}\.[A-Z0-9]{24}")
_FULL_TOKEN = re.compile(r"(dt0[a-zA-Z][0-9]{2}\.[A-Z0-9]{24})\.[A-Z0-9]{64}")
MASK = "***"


def mask_secrets(text: str) -> str:
    """Replace the secret part of every full token in `text`, keeping the id so logs stay useful."""
    return TOKEN_PATTERN.sub(lambda m: f"{m.group(1)}.{MASK}", text)


def contains_secret(text: str) -> bool:
    return TOKEN_PATTERN.search(text) is not None


class TokenSecret:
    """A full Dynatrace token whose str, repr and serialisation show only its id.

    Pydantic models may declare fields of this type: validation accepts a string, and a JSON dump
    writes the id followed by a mask, never the secret. Use `reveal()` only where the value must
    cross the boundary (an `Authorization` header, a Kubernetes Secret's data).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value.strip()

    @property
    def token_id(self) -> str:
        """`prefix.PUBLIC`, or a fixed placeholder when the value is not in the documented format."""
        match = _FULL_TOKEN.fullmatch(self._value)
        return match.group(1) if match else "<unrecognised token>"

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return f"{self.token_id}.{MASK}"

    def __repr__(self) -> str:
        return f"TokenSecret({self.token_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenSecret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("TokenSecret cannot be pickled")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        from_str = core_schema.no_info_plain_validator_function(cls._validate)
        return core_schema.json_or_python_schema(
            json_schema=core_schema.chain_schema([core_schema.str_schema(), from_str]),
            python_schema=core_schema.union_schema(
                [
                    core_schema.is_instance_schema(cls),
                    core_schema.chain_schema([core_schema.str_schema(), from_str]),
                ]
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def _validate(cls, value: Any) -> TokenSecret:
        return value if isinstance(value, TokenSecret) else cls(str(value))


class SecretMaskingFilter(logging.Filter):
    """Masks token secrets in a record's message, arguments and formatted exception."""

    def filter(self, record: logging.LogRecord) -> bool:
        _mask_record(record)
        return True


def _mask_record(record: logging.LogRecord) -> None:
    if getattr(record, "_secrets_masked", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # a broken format string must not stop logging
        message = str(record.msg)
    record.msg = mask_secrets(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_secrets(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_secrets(record.stack_info)
    record._secrets_masked = True


_installed = False


def install_log_masking() -> None:
    """Mask secrets in every log record of the process, whichever logger or handler it goes through.

    A filter on one logger does not see records of its children, so the masking is done where every
    record is born: the log record factory. Handlers configured later are covered too.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _mask_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
