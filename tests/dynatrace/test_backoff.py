"""Backoff arithmetic and the server's wait hints, with the clock and the randomness fixed."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from apitoken_operator.dynatrace import backoff
from apitoken_operator.settings import RetrySettings

NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z, epoch seconds

RETRY_AFTER = {
    "integer seconds": ("3", 3.0),
    "fraction": ("1.5", 1.5),
    "zero": ("0", 0.0),
    "negative is now": ("-5", 0.0),
    "padded": ("  7 ", 7.0),
    "http date in the future": (format_datetime(datetime.fromtimestamp(NOW + 12, tz=UTC), usegmt=True), 12.0),
    "http date in the past": (format_datetime(datetime.fromtimestamp(NOW - 60, tz=UTC), usegmt=True), 0.0),
    "rfc 850 date": ("Sunday, 15-Jun-25 15:07:00 GMT", 20.0),
    "garbage": ("soon", None),
    "empty": ("", None),
    "nan": ("nan", None),
}


@pytest.mark.parametrize(("value", "seconds"), RETRY_AFTER.values(), ids=RETRY_AFTER.keys())
def test_parse_retry_after(value: str, seconds: float | None) -> None:
    assert backoff.parse_retry_after(value, now=NOW) == seconds


RATE_LIMIT_RESET = {
    "epoch microseconds (documented)": (str(int((NOW + 4) * 1_000_000)), 4.0),
    "epoch milliseconds": (str(int((NOW + 4) * 1_000)), 4.0),
    "epoch seconds (as Dynatrace's Go library reads it)": (str(int(NOW + 4)), 4.0),
    "epoch seconds with fraction": (str(NOW + 4.5), 4.5),
    "delta seconds": ("6", 6.0),
    "large delta seconds": ("86400", 86400.0),
    "epoch microseconds in the past": (str(int((NOW - 10) * 1_000_000)), 0.0),
    "epoch seconds in the past": (str(int(NOW - 10)), 0.0),
    "garbage": ("tomorrow", None),
}


@pytest.mark.parametrize(("value", "seconds"), RATE_LIMIT_RESET.values(), ids=RATE_LIMIT_RESET.keys())
def test_parse_rate_limit_reset(value: str, seconds: float | None) -> None:
    parsed = backoff.parse_rate_limit_reset(value, now=NOW)
    if seconds is None:
        assert parsed is None
    else:
        assert parsed == pytest.approx(seconds, abs=1e-3)


SERVER_HINT = {
    "none": ({}, None),
    "retry-after only": ({"Retry-After": "3"}, 3.0),
    "reset only": ({"X-RateLimit-Reset": str(int((NOW + 5) * 1e6))}, 5.0),
    "both: the longer wins": ({"Retry-After": "3", "X-RateLimit-Reset": str(int(NOW + 8))}, 8.0),
    "both: retry-after longer": ({"Retry-After": "9", "X-RateLimit-Reset": "2"}, 9.0),
    "unreadable retry-after, readable reset": ({"Retry-After": "later", "X-RateLimit-Reset": "2"}, 2.0),
    "both unreadable": ({"Retry-After": "later", "X-RateLimit-Reset": "soon"}, None),
}


@pytest.mark.parametrize(("headers", "seconds"), SERVER_HINT.values(), ids=SERVER_HINT.keys())
def test_server_hint(headers: dict[str, str], seconds: float | None) -> None:
    hint = backoff.server_hint(httpx.Headers(headers), now=NOW)
    if seconds is None:
        assert hint is None
    else:
        assert hint == pytest.approx(seconds, abs=1e-3)


SETTINGS = RetrySettings(max_attempts=10, initial_backoff=0.5, max_backoff=10.0, deadline=100.0)


@pytest.mark.parametrize("retry", range(1, 10))
def test_full_jitter_bounds(retry: int) -> None:
    ceiling = min(10.0, 0.5 * 2 ** (retry - 1))
    assert backoff.backoff_delay(retry, settings=SETTINGS, random=lambda: 0.0) == 0.0
    assert backoff.backoff_delay(retry, settings=SETTINGS, random=lambda: 0.999999) == pytest.approx(
        ceiling, rel=1e-5
    )
    assert backoff.backoff_delay(retry, settings=SETTINGS, random=lambda: 0.5) == pytest.approx(ceiling / 2)


def test_hint_is_a_floor_and_jitter_adds_to_it() -> None:
    assert backoff.backoff_delay(1, settings=SETTINGS, hint=3.0, random=lambda: 0.0) == 3.0
    assert backoff.backoff_delay(1, settings=SETTINGS, hint=3.0, random=lambda: 0.999999) == pytest.approx(
        3.5
    )
    assert backoff.backoff_delay(3, settings=SETTINGS, hint=3.0, random=lambda: 0.5) == pytest.approx(4.0)


def test_every_wait_is_capped() -> None:
    assert backoff.backoff_delay(1, settings=SETTINGS, hint=3600.0, random=lambda: 0.5) == 10.0
    assert backoff.backoff_delay(10_000, settings=SETTINGS, random=lambda: 0.999999) <= 10.0
