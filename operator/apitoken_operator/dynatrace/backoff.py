"""How long to wait before retrying: the server's hint, exponential backoff and full jitter, bounded.

The wait before retry `n` (1 for the second attempt) is

    hint + U(0, min(max_backoff, initial_backoff * 2 ** (n - 1)))     capped at max_backoff

where `hint` is what the server asked for (0 when it did not say): the client never comes back earlier
than told unless that is longer than `max_backoff`, and the jitter spreads many clients told the same
instant. Without a hint this is AWS's "full jitter".

Server hints, the larger wins when both are sent:

- `Retry-After`: delta seconds (`120`, fractions tolerated) or an HTTP date (RFC 9110).
- `X-RateLimit-Reset`: Dynatrace documents microseconds since the epoch, yet its own Go client
  library reads the value as seconds (see shared/dynatrace/tokens-api.md), so servers and proxies
  may send either. A value is read by magnitude: >= 1e14 is epoch microseconds, >= 1e11 epoch milliseconds,
  >= 1e9 epoch seconds (all three are in 2001..5138 at their scale, so they cannot be confused
  today), and anything smaller is a delay in seconds. A reset already past means "now".

Pure functions; the clock and the random source are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime

from apitoken_operator.settings import RetrySettings

__all__ = ["backoff_delay", "parse_rate_limit_reset", "parse_retry_after", "server_hint"]

_EPOCH_MICROSECONDS = 1e14
_EPOCH_MILLISECONDS = 1e11
_EPOCH_SECONDS = 1e9


def parse_retry_after(value: str, *, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` value; None when it is neither a number nor an HTTP date."""
    text = value.strip()
    seconds = _number(text)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # RFC 9110 dates are GMT; obsolete forms may lack a zone
        return None
    return max(moment.timestamp() - now, 0.0)


def parse_rate_limit_reset(value: str, *, now: float) -> float | None:
    """Seconds to wait from an `X-RateLimit-Reset` value (see the module docstring for the units)."""
    number = _number(value.strip())
    if number is None:
        return None
    if number >= _EPOCH_MICROSECONDS:
        return max(number / 1e6 - now, 0.0)
    if number >= _EPOCH_MILLISECONDS:
        return max(number / 1e3 - now, 0.0)
    if number >= _EPOCH_SECONDS:
        return max(number - now, 0.0)
    return max(number, 0.0)


def server_hint(headers: Mapping[str, str], *, now: float) -> float | None:
    """The longest wait any recognised header asks for; None when none does. `now` is epoch seconds."""
    hints: list[float | None] = []
    if (retry_after := headers.get("retry-after")) is not None:
        hints.append(parse_retry_after(retry_after, now=now))
    if (reset := headers.get("x-ratelimit-reset")) is not None:
        hints.append(parse_rate_limit_reset(reset, now=now))
    found = [hint for hint in hints if hint is not None]
    return max(found) if found else None


def backoff_delay(
    retry: int, *, settings: RetrySettings, hint: float | None = None, random: Callable[[], float]
) -> float:
    """The wait before retry number `retry` (1-based); `random()` returns a float in [0, 1)."""
    exponent = min(max(retry - 1, 0), 62)  # 2**62 * any sane initial_backoff is already past max_backoff
    ceiling = min(settings.max_backoff, settings.initial_backoff * 2.0**exponent)
    jitter = random() * ceiling
    return min(settings.max_backoff, (hint or 0.0) + jitter)


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
