"""Fault injection, switchable at run time: throttling, server errors, latency, dropped connections, outages.

Every draw comes from one seeded `random.Random`, so a run with the same seed and the same request order
injects the same faults. A draw happens only for a fault whose ratio is above zero, in a fixed order
(drop, 429, 5xx, drop-after-processing), so turning one fault on does not reshuffle the others' past.
Faults apply to the Tokens API only, never to the admin endpoint, and optionally to chosen operations.

Outage modes: `unavailable` answers every API call 503; `refuse` closes the listening socket so that
connecting fails (connection refused) and drops requests on connections already open. The server
reacts to a change through `subscribe`. `outage_seconds` lifts an outage by itself after that many
real seconds, so a subprocess emulator can be put into `refuse` and still come back.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

__all__ = ["OPERATIONS", "FaultConfig", "FaultDecision", "Faults", "Outage"]

OPERATIONS = ("list", "create", "get", "update", "delete", "lookup")
SERVER_ERROR_STATUSES = (502, 503, 504)


class Outage(StrEnum):
    OFF = "off"
    UNAVAILABLE = "unavailable"
    REFUSE = "refuse"


def _ratio(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, not {value}")


@dataclass(frozen=True)
class FaultConfig:
    """What to inject. Ratios are probabilities per request (0..1); durations are real seconds."""

    #: Share of requests answered 429.
    rate_limit_ratio: float = 0.0
    #: `Retry-After` on 429 (and outage 503) answers, in seconds (sent rounded up); None sends none.
    retry_after: float | None = 1.0
    #: Also send `X-RateLimit-Reset`: the wall-clock reset time in microseconds since the epoch.
    rate_limit_reset: bool = False
    #: Share of requests answered with one of `server_error_statuses`, chosen at random.
    server_error_ratio: float = 0.0
    server_error_statuses: tuple[int, ...] = SERVER_ERROR_STATUSES
    #: 5xx bodies as a gateway's HTML page instead of Dynatrace's JSON envelope.
    server_error_html: bool = False
    #: Seconds added before each request is handled.
    latency: float = 0.0
    #: Share of requests whose connection is closed before they are handled (nothing happens).
    drop_ratio: float = 0.0
    #: Share of requests that are carried out but whose connection is closed before the response: a
    #: create makes its token and the secret is lost.
    drop_response_ratio: float = 0.0
    #: Operations the ratio faults and latency apply to; None means all.
    operations: frozenset[str] | None = None
    outage: Outage = Outage.OFF
    #: Lift the outage by itself after this many seconds; None keeps it until switched off.
    outage_seconds: float | None = None

    def __post_init__(self) -> None:
        # Normalise what callers may pass loosely (a list of operations, "refuse"), so comparisons hold.
        object.__setattr__(self, "outage", Outage(self.outage))
        object.__setattr__(self, "server_error_statuses", tuple(self.server_error_statuses))
        if self.operations is not None:
            object.__setattr__(self, "operations", frozenset(self.operations))
        for name in ("rate_limit_ratio", "server_error_ratio", "drop_ratio", "drop_response_ratio"):
            _ratio(name, getattr(self, name))
        for name in ("latency", "retry_after", "outage_seconds"):
            value = getattr(self, name)
            if value is not None and (value < 0 or math.isnan(value)):
                raise ValueError(f"{name} must not be negative")
        bad = [status for status in self.server_error_statuses if not 500 <= status <= 599]
        if bad or not self.server_error_statuses:
            raise ValueError(f"server_error_statuses must be non-empty 5xx codes, not {bad}")
        if self.operations is not None:
            unknown = sorted(set(self.operations) - set(OPERATIONS))
            if unknown:
                raise ValueError(f"unknown operation(s) {unknown}; known: {', '.join(OPERATIONS)}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["server_error_statuses"] = list(self.server_error_statuses)
        data["operations"] = None if self.operations is None else sorted(self.operations)
        data["outage"] = self.outage.value
        return data

    def merged(self, changes: Mapping[str, Any]) -> FaultConfig:
        """A copy with `changes` (JSON-style values) applied; unknown keys raise ValueError."""
        known = {item.name for item in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s) {unknown}; known: {', '.join(sorted(known))}")
        converted: dict[str, Any] = dict(changes)
        if converted.get("operations") is not None:
            converted["operations"] = frozenset(_strings("operations", converted["operations"]))
        if "server_error_statuses" in converted:
            converted["server_error_statuses"] = tuple(
                int(status) for status in converted["server_error_statuses"]
            )
        if "outage" in converted:
            converted["outage"] = Outage(converted["outage"])
        for name in (
            "rate_limit_ratio",
            "server_error_ratio",
            "drop_ratio",
            "drop_response_ratio",
            "latency",
        ):
            if name in converted:
                converted[name] = float(converted[name])
        return replace(self, **converted)


def _strings(name: str, value: Any) -> Iterable[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a list of strings")
    return [str(item) for item in value]


@dataclass(frozen=True)
class FaultDecision:
    """What to do with one request."""

    delay: float = 0.0
    #: Close the connection without handling the request.
    drop: bool = False
    #: Answer with this status instead of handling the request.
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    html: bool = False
    #: Handle the request, then close the connection instead of answering.
    drop_response: bool = False


NO_FAULT = FaultDecision()


class Faults:
    """The current fault configuration and the seeded random source that applies it."""

    def __init__(self, *, seed: int = 0, config: FaultConfig | None = None) -> None:
        self._random = random.Random(seed)  # noqa: S311 - reproducible fault draws, not cryptography
        self._config = config or FaultConfig()
        self._outage_deadline: float | None = None
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._stamp_outage()

    @property
    def config(self) -> FaultConfig:
        return self._config

    def set(self, config: FaultConfig) -> FaultConfig:
        """Replace the whole configuration."""
        with self._lock:
            self._config = config
            self._stamp_outage()
        self._notify()
        return config

    def update(self, **changes: Any) -> FaultConfig:
        """Change some settings, keeping the others (`faults.update(rate_limit_ratio=0.5)`)."""
        return self.set(self._config.merged(changes))

    def reset(self) -> FaultConfig:
        return self.set(FaultConfig())

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._random.seed(seed)

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every change (the server uses it to open or close its socket)."""
        self._listeners.append(listener)

    def outage(self) -> Outage:
        """The outage in force now, with an `outage_seconds` deadline taken into account."""
        mode = self._config.outage
        if (
            mode is not Outage.OFF
            and self._outage_deadline is not None
            and time.monotonic() >= self._outage_deadline
        ):
            return Outage.OFF
        return mode

    def outage_remaining(self) -> float | None:
        """Seconds until a timed outage lifts, or None when it is not timed or not in force."""
        if self.outage() is Outage.OFF or self._outage_deadline is None:
            return None
        return max(0.0, self._outage_deadline - time.monotonic())

    def decide(self, operation: str) -> FaultDecision:
        config = self._config
        outage = self.outage()
        if outage is Outage.REFUSE:
            return FaultDecision(drop=True)
        if outage is Outage.UNAVAILABLE:
            return FaultDecision(status=503, headers=self._retry_headers(config))
        if config.operations is not None and operation not in config.operations:
            return NO_FAULT
        with self._lock:
            draw = self._random.random
            if config.drop_ratio and draw() < config.drop_ratio:
                return FaultDecision(delay=config.latency, drop=True)
            if config.rate_limit_ratio and draw() < config.rate_limit_ratio:
                return FaultDecision(delay=config.latency, status=429, headers=self._retry_headers(config))
            if config.server_error_ratio and draw() < config.server_error_ratio:
                status = self._random.choice(config.server_error_statuses)
                return FaultDecision(delay=config.latency, status=status, html=config.server_error_html)
            drop_response = bool(config.drop_response_ratio) and draw() < config.drop_response_ratio
        if drop_response or config.latency:
            return FaultDecision(delay=config.latency, drop_response=drop_response)
        return NO_FAULT

    @staticmethod
    def _retry_headers(config: FaultConfig) -> dict[str, str]:
        headers: dict[str, str] = {}
        if config.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(config.retry_after))
        if config.rate_limit_reset:
            wait = 1.0 if config.retry_after is None else config.retry_after
            headers["X-RateLimit-Reset"] = str(int((time.time() + wait) * 1_000_000))
        return headers

    def _stamp_outage(self) -> None:
        seconds = self._config.outage_seconds
        if self._config.outage is Outage.OFF or seconds is None:
            self._outage_deadline = None
        else:
            self._outage_deadline = time.monotonic() + seconds

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()
