"""Typed settings, grouped by concern and passed in explicitly; nothing here is global state.

Every duration is in seconds unless its name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetrySettings:
    """How the Dynatrace client retries throttling and outages."""

    #: Attempts per call, the first included.
    max_attempts: int = 8
    #: Backoff before the second attempt; doubles each time (exponential), then full jitter applies.
    initial_backoff: float = 0.2
    #: No single wait is longer than this, whatever the server's Retry-After says.
    max_backoff: float = 30.0
    #: Overall budget for one call, retries and waits included; a wait that would pass it is not started.
    deadline: float = 120.0


@dataclass(frozen=True)
class DynatraceSettings:
    """How the operator talks to a Dynatrace environment."""

    #: Seconds to establish a TCP/TLS connection.
    connect_timeout: float = 5.0
    #: Seconds to wait for a response once the request is sent.
    read_timeout: float = 30.0
    #: Connections kept open per environment.
    max_connections: int = 20
    #: Requests in flight at once per connection (waits between retries do not hold a slot). Dynatrace
    #: queues an environment's requests and answers 429 when the queue is full; this keeps the operator
    #: from filling it on its own.
    max_concurrent_calls: int = 16
    #: Page size for list calls (the API allows 100..10000).
    list_page_size: int = 1000
    retry: RetrySettings = field(default_factory=RetrySettings)


#: Scopes that let a token mint or manage other tokens: refused through the shared default connection
#: unless the policy allows them explicitly.
ADMIN_SCOPES = ("apiTokens.write", "TenantTokenManagement")


@dataclass(frozen=True)
class PolicySettings:
    """What ApiTokens may ask of the operator-wide default connection (own connections are not limited).

    Patterns are shell-style (`team-*`). An empty `allowed_namespaces` means every namespace.
    """

    allowed_namespaces: tuple[str, ...] = ()
    #: Scopes the default connection may grant; empty means any scope not denied below.
    allowed_scopes: tuple[str, ...] = ()
    denied_scopes: tuple[str, ...] = ADMIN_SCOPES
    #: Personal access tokens carry their owner's permissions: off for the shared connection by default.
    allow_personal_access_tokens: bool = False


@dataclass(frozen=True)
class OperatorSettings:
    """Everything `apitoken-operator run` configures."""

    #: `namespace/name` of the Secret with apiUrl and apiToken used when an ApiToken names no connection.
    default_connection: str | None = None
    #: Seconds a listing of a connection's tokens is trusted before a reconcile lists again.
    observation_max_age: float = 60.0
    #: Seconds between drift checks: one list call per connection finds tokens changed or deleted outside.
    drift_interval: float = 300.0
    #: Seconds before a Stalled object that depends on something outside it (a connection Secret) retries.
    stalled_retry_delay: float = 60.0
    #: Which Events to post: "all", or "warnings" only (the Normal ones — a token created, deleted,
    #: rotated — cost one Kubernetes write each, which counts when thousands of objects change at once).
    events: str = "all"
    #: Other replicas may run beside this one (kopf peering). A replica that pauses for another still
    #: finishes the calls it has under way, so intents are then written only onto the version of the
    #: object they were decided on, and a create recorded by another process is waited out (at most
    #: `foreign_create_window`) instead of being settled at once. Standalone, a recorded create that is
    #: not this process's own is a dead predecessor's and is settled at once.
    peering: bool = False
    #: Replicas' clocks may differ by this much when one judges how old another's intent is.
    replica_clock_skew: float = 60.0
    dynatrace: DynatraceSettings = field(default_factory=DynatraceSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)

    @property
    def foreign_create_window(self) -> float | None:
        """Seconds after its intent within which another process's create may still be running."""
        if not self.peering:
            return None
        return self.dynatrace.retry.deadline + self.replica_clock_skew
