"""Fault injection, switchable at run time: throttling, server errors, latency, dropped connections, outages,
and the harsher realities of a real environment (answers that describe the past, queued 429s, offset
paging, consumers using tokens).

Every draw comes from one seeded `random.Random`, so a run with the same seed and the same request order
injects the same faults. A draw happens only for a fault whose ratio is above zero, in a fixed order
(drop, 429 and then its queue wait when `throttle_wait` is set, 5xx, drop-after-processing), so turning
one fault on does not reshuffle the others' past. The post-snapshot latencies (`list_latency`,
`list_latency_per_1000`, `get_latency`), paging and the pool (`throttle_capacity`) are not limited by
`operations`: they are properties of the environment, not per-operation faults.
Faults apply to the Tokens API only, never to the admin endpoint, and optionally to chosen operations.

Outage modes: `unavailable` answers every API call 503; `refuse` closes the listening socket so that
connecting fails (connection refused) and drops requests on connections already open. The server
reacts to a change through `subscribe`. `outage_seconds` lifts an outage by itself after that many
real seconds, so a subprocess emulator can be put into `refuse` and still come back.

`FaultConfig.realistic()` (the "realistic" profile) combines the settings that make the emulator behave
like the harsher reading of Dynatrace's documentation (tokens-api.md, "Harsher facts").
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

__all__ = [
    "OPERATIONS",
    "PROFILES",
    "REALISTIC",
    "FaultConfig",
    "FaultDecision",
    "Faults",
    "Outage",
    "Paging",
]

OPERATIONS = ("list", "create", "get", "update", "delete", "lookup")
SERVER_ERROR_STATUSES = (502, 503, 504)
#: Profile names accepted by `FaultConfig.profile` (CLI `--profile`, admin `{"profile": ...}`).
PROFILES = ("default", "realistic")


class Outage(StrEnum):
    OFF = "off"
    UNAVAILABLE = "unavailable"
    REFUSE = "refuse"


class Paging(StrEnum):
    """How `nextPageKey` cursors work: keyset (never skips) or offset (Dynatrace's documented examples)."""

    KEYSET = "keyset"
    OFFSET = "offset"


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
    #: Answers gzip-compressed whenever the client accepts gzip, as a web server in front of an API may do.
    compress: bool = False
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
    #: Seconds a list answer waits AFTER its page was read (plus `list_latency_per_1000` per 1,000 tokens
    #: in the page): the answer describes the store as it was when the request arrived.
    list_latency: float = 0.0
    list_latency_per_1000: float = 0.0
    #: The same for GET by id: the body is built, then the answer waits.
    get_latency: float = 0.0
    #: A request chosen for a 429 first waits in "the queue" a random time up to this many seconds; with
    #: `throttle_capacity`, a request finding the pool full waits up to this long for a free slot.
    throttle_wait: float = 0.0
    #: API requests served at once (the environment's pool); None is unlimited. A request that finds the
    #: pool full waits up to `throttle_wait` for a slot, then gets 429.
    throttle_capacity: int | None = None
    #: `keyset` cursors never skip a token; `offset` cursors encode an offset and a page size, as
    #: Dynatrace's documented examples decode to, so a token deleted between two pages shifts the next.
    paging: Paging = Paging.KEYSET
    #: Every this many real seconds, a simulated consumer uses a random `usage_ratio` share of the usable
    #: tokens (lastUsedDate = emulator clock now, lastUsedIpAddress = a fake consumer address); 0 is off.
    usage_interval: float = 0.0
    usage_ratio: float = 0.0

    @classmethod
    def realistic(cls, **overrides: Any) -> FaultConfig:
        """The harsher reading of Dynatrace's documentation, combined (tokens-api.md, "Harsher facts").

        Answers describe the past (list and get latency after the snapshot), a 429 is bare and may come
        after up to 10 s in the queue (429s happen only with `rate_limit_ratio` or `throttle_capacity`,
        which stay off unless overridden), cursors are offsets, and consumers use tokens every second.
        """
        return cls.profile("realistic", **overrides)

    @classmethod
    def profile(cls, name: str, **overrides: Any) -> FaultConfig:
        """A named profile (`default`: everything off; `realistic`) with `overrides` applied."""
        return cls().merged({"profile": name, **overrides})

    def __post_init__(self) -> None:
        # Normalise what callers may pass loosely (a list of operations, "refuse"), so comparisons hold.
        object.__setattr__(self, "outage", Outage(self.outage))
        object.__setattr__(self, "paging", Paging(self.paging))
        object.__setattr__(self, "server_error_statuses", tuple(self.server_error_statuses))
        if self.operations is not None:
            object.__setattr__(self, "operations", frozenset(self.operations))
        for name in _RATIOS:
            _ratio(name, getattr(self, name))
        for name in (*_DURATIONS, "retry_after", "outage_seconds"):
            value = getattr(self, name)
            if value is not None and (value < 0 or math.isnan(value) or math.isinf(value)):
                raise ValueError(f"{name} must be a finite number of seconds, not negative")
        if self.throttle_capacity is not None and (
            isinstance(self.throttle_capacity, bool) or self.throttle_capacity < 1
        ):
            raise ValueError(f"throttle_capacity must be at least 1 (or None), not {self.throttle_capacity}")
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
        data["paging"] = self.paging.value
        return data

    def merged(self, changes: Mapping[str, Any]) -> FaultConfig:
        """A copy with `changes` (JSON-style values) applied; unknown keys raise ValueError.

        A `profile` key applies the settings that profile names first (`default` names them all,
        `realistic` the ones in REALISTIC), then the other keys; settings it does not name are kept.
        """
        if "profile" in changes:
            rest = {key: value for key, value in changes.items() if key != "profile"}
            return self.merged({**_profile_settings(changes["profile"]), **rest})
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
        if "paging" in converted:
            converted["paging"] = Paging(converted["paging"])
        for name in (*_RATIOS, *_DURATIONS):
            if name in converted:
                converted[name] = _number(name, converted[name])
        if converted.get("throttle_capacity") is not None:
            value = converted["throttle_capacity"]
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                raise ValueError(f"throttle_capacity must be a whole number, not {value!r}")
            converted["throttle_capacity"] = int(value)
        return replace(self, **converted)


#: The settings the "realistic" profile sets (tokens-api.md, "Harsher facts"); the others keep theirs.
REALISTIC: Mapping[str, Any] = {
    "list_latency": 2.0,
    "list_latency_per_1000": 0.2,
    "get_latency": 0.2,
    "retry_after": None,
    "rate_limit_reset": False,
    "throttle_wait": 10.0,
    "paging": "offset",
    "usage_interval": 1.0,
    "usage_ratio": 0.2,
    "compress": True,
}


def _profile_settings(name: Any) -> dict[str, Any]:
    if name == "realistic":
        return dict(REALISTIC)
    if name == "default":
        return FaultConfig().to_json()
    raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")


_RATIOS = ("rate_limit_ratio", "server_error_ratio", "drop_ratio", "drop_response_ratio", "usage_ratio")
_DURATIONS = (
    "latency",
    "list_latency",
    "list_latency_per_1000",
    "get_latency",
    "throttle_wait",
    "usage_interval",
)


def _number(name: str, value: Any) -> float:
    # JSON booleans are ints in Python; `true` as a latency is a mistake, not one second.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} must be a number, not {value!r}")
    return float(value)


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
    #: Seconds spent in "the queue" before an injected 429 (drawn up to `throttle_wait`).
    queue_wait: float = 0.0


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
                # The draw happens only when a wait is configured, so other faults' draws stay put.
                queued = self._random.uniform(0.0, config.throttle_wait) if config.throttle_wait else 0.0
                return FaultDecision(
                    delay=config.latency,
                    status=429,
                    headers=self._retry_headers(config, after=queued),
                    queue_wait=queued,
                )
            if config.server_error_ratio and draw() < config.server_error_ratio:
                status = self._random.choice(config.server_error_statuses)
                return FaultDecision(delay=config.latency, status=status, html=config.server_error_html)
            drop_response = bool(config.drop_response_ratio) and draw() < config.drop_response_ratio
        if drop_response or config.latency:
            return FaultDecision(delay=config.latency, drop_response=drop_response)
        return NO_FAULT

    @staticmethod
    def _retry_headers(config: FaultConfig, *, after: float = 0.0) -> dict[str, str]:
        """`Retry-After` / `X-RateLimit-Reset` as configured; `after` is the queue wait before answering."""
        headers: dict[str, str] = {}
        if config.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(config.retry_after))
        if config.rate_limit_reset:
            wait = 1.0 if config.retry_after is None else config.retry_after
            headers["X-RateLimit-Reset"] = str(int((time.time() + after + wait) * 1_000_000))
        return headers

    def throttled(self) -> FaultDecision:
        """The answer to a request that found the pool full and waited in vain (`throttle_capacity`)."""
        return FaultDecision(status=429, headers=self._retry_headers(self._config))

    def _stamp_outage(self) -> None:
        seconds = self._config.outage_seconds
        if self._config.outage is Outage.OFF or seconds is None:
            self._outage_deadline = None
        else:
            self._outage_deadline = time.monotonic() + seconds

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()
