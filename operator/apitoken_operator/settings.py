"""Typed settings, grouped by concern and passed in explicitly; nothing here is global state.

Every duration is in seconds unless its name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apitoken_operator.api.group import qualified


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
    #: Bytes one page of a listing may hold: 10,000 tokens with every field are about 5 MB, so more than
    #: this is a server misbehaving (or an endless stream), and is not read further. (An answer about one
    #: token is capped at 1 MiB.)
    max_response_bytes: int = 16 * 1024 * 1024
    retry: RetrySettings = field(default_factory=RetrySettings)


#: What the default connection grants unless `--policy-allowed-scope` replaces it: sending data in and
#: reading monitoring results, nothing that changes configuration, reads credentials or installs code.
#: Each entry, and why it is safe to hand to any namespace that may use the shared connection:
DEFAULT_ALLOWED_SCOPES: tuple[str, ...] = (
    "metrics.ingest",  # send metrics: adds data, changes nothing
    "logs.ingest",  # send log lines: adds data
    "events.ingest",  # send events: adds data (and may open problems, which is their purpose)
    "bizevents.ingest",  # send business events: adds data
    "openTelemetryTrace.ingest",  # send OTLP traces: adds data
    "metrics.read",  # read metric series: monitoring results, no configuration, no credentials
    "entities.read",  # read the monitored topology (hosts, services, processes)
    "problems.read",  # read problems Davis raised
    "events.read",  # read events
    "slo.read",  # read service-level objectives and their status
)

#: Scopes that mint, read or rotate credentials, change configuration or access, or put code into the
#: environment: a namespace user holding one could act beyond their namespace's rights. The default
#: connection never grants them, whatever the allow-list says; configuration adds to this list
#: (`--policy-denied-scope`) and lifts single names out of it only one by one
#: (`--policy-allow-escalating-scope NAME`). Compared case-insensitively, so that a spelling Dynatrace
#: might accept cannot slip past.
ESCALATING_SCOPES: tuple[str, ...] = (
    # tokens and credentials
    "apiTokens.read",  # lists every token's metadata, looks tokens up
    "apiTokens.write",  # mints further tokens of any scope
    "TenantTokenManagement",  # legacy: manage tenant tokens (agents' credentials)
    "tenantTokenRotation.write",  # rotates the tenant token: breaks every agent
    "activeGateTokenManagement.read",
    "activeGateTokenManagement.create",  # mints ActiveGate tokens
    "activeGateTokenManagement.write",
    "agentTokenManagement.read",  # reads agent tokens
    "InstallerDownload",  # the installers embed the environment's tenant token
    "credentialVault.read",  # reads stored credentials
    "credentialVault.write",
    "ActiveGateCertManagement",  # ActiveGate certificates: a way to intercept traffic
    # configuration and access
    "settings.read",  # settings objects hold webhook URLs, integration credentials
    "settings.write",  # changes any setting, access and data privacy included
    "ReadConfig",  # legacy configuration API: notification and integration credentials
    "WriteConfig",
    "DataPrivacy",  # turns masking of personal data off
    "CaptureRequestData",  # captures request data (headers, parameters) from monitored apps
    "oneAgents.write",  # reconfigures agents
    "activeGates.write",  # reconfigures ActiveGates
    "networkZones.write",  # reroutes agent traffic
    # code that runs inside the environment or on its agents and ActiveGates
    "PluginUpload",
    "extensions.write",
    "extensionEnvironment.write",
    "extensionConfigurations.write",
    "extensionConfigurationActions.write",
    "hub.install",
    "hub.write",
)


@dataclass(frozen=True)
class PolicySettings:
    """What ApiTokens may ask of the operator-wide default connection (own connections are not limited).

    A scope passes when it matches `allowed_scopes` (shell-style patterns, case-sensitive as Dynatrace's
    scope names are) and matches neither `ESCALATING_SCOPES` nor `denied_scopes` (case-insensitive),
    or when it is named exactly in `allowed_escalating_scopes`. Deny wins over any allow pattern, so
    `*` cannot let an escalating scope through. An empty `allowed_namespaces` means every namespace.
    """

    allowed_namespaces: tuple[str, ...] = ()
    #: Scopes the default connection may grant (patterns); empty means none.
    allowed_scopes: tuple[str, ...] = DEFAULT_ALLOWED_SCOPES
    #: Denied in addition to `ESCALATING_SCOPES` (patterns): extends, never replaces.
    denied_scopes: tuple[str, ...] = ()
    #: Exact scope names the administrator lets through although a deny pattern matches them.
    allowed_escalating_scopes: tuple[str, ...] = ()
    #: Personal access tokens carry their owner's permissions: off for the shared connection by default.
    allow_personal_access_tokens: bool = False
    #: Namespaces (patterns) whose ApiTokens may adopt existing tokens through the default connection.
    #: Empty: none. Adoption takes over a token the default connection can see — any token of the
    #: environment — so it is off unless an administrator names the namespaces trusted with it.
    adoption_namespaces: tuple[str, ...] = ()
    #: ApiTokens per namespace that may hold a token made through the default connection; None: no limit.
    max_tokens_per_namespace: int | None = None
    #: Longest spec.rotation.gracePeriod through the default connection, in seconds: a rotated-out token
    #: stays live that long, so a long grace and frequent rotations would keep many tokens alive.
    max_grace_period: float = 7 * 24 * 3600.0

    @property
    def all_denied_scopes(self) -> tuple[str, ...]:
        """The built-in escalating scopes and the configured extra denials."""
        return (*ESCALATING_SCOPES, *(s for s in self.denied_scopes if s not in ESCALATING_SCOPES))


@dataclass(frozen=True)
class ConnectionSettings:
    """What a connection Secret may point at. The default connection is the administrator's own choice
    and passes the address checks; namespace connections are written by namespace users, who must not
    reach the cluster's inside through them."""

    #: Plain http:// URLs (loopback tests, the emulator); any connection, default included.
    allow_insecure_http: bool = False
    #: Networks (CIDR) namespace connections may reach although they are internal (private, loopback...).
    allowed_cidrs: tuple[str, ...] = ()
    #: Label a namespace Secret must carry, with value "true", to serve as a connection.
    opt_in_label: str = qualified("connection")


@dataclass(frozen=True)
class ObservationSettings:
    """The bounds of one connection's view of its tokens (one listing, remembered)."""

    #: A listing longer than this is refused: a view costs ~430 bytes a token, so this bounds one
    #: connection's view at ~100 MB; environments hold far fewer tokens. (The client also stops a walk
    #: that pages far past the count its first page gave.)
    max_tokens: int = 250_000
    #: Seconds one listing may take, every page included.
    listing_deadline: float = 300.0
    #: Seconds after a failed listing during which callers get its error instead of another listing: a
    #: connection whose server hangs, refuses or pages without end is not asked again at every reconcile.
    failure_backoff: float = 10.0
    #: Seconds the operator keeps knowing that a token it deleted (or was told is gone) is gone, so that
    #: reconciles right after a delete need no GET to confirm what a listing no longer shows.
    gone_memory: float = 600.0


@dataclass(frozen=True)
class ReconcileSettings:
    """The pace of reconciles: how soon to look again after each setback, and how much to do at once."""

    #: Steps (gather, plan, act) one reconcile takes at most before it yields and resumes shortly.
    max_steps: int = 10
    #: Attempts to store a new token's secret (its only copy is in memory) before the token is undone.
    secret_write_attempts: int = 8
    #: After an outage, a timeout or an unforeseen error.
    transient_retry: float = 10.0
    #: After a create whose answer was lost: settling it takes one listing, which costs little.
    outcome_unknown_retry: float = 2.0
    #: Another writer changed the object between its read and a conditional write: look again soon.
    conflict_retry: float = 0.5
    #: While another replica's create may be running: how often to ask whether that replica still is.
    await_poll: float = 10.0
    #: A parked object is woken when its connection has room; this is only the fallback.
    parked_retry: float = 60.0
    #: Reconciles running at once. An event that finds them all taken queues its object in the scheduler
    #: (a key, read afresh when its turn comes) instead of waiting: a waiting kopf worker holds ~30 KB, and
    #: a burst of 10,000 creates held 8,000 of them (336 MB). The API server is the bottleneck long before.
    max_reconciles: int = 64
    #: Scheduled reconciles (retries, wake-ups) running at once.
    scheduler_concurrency: int = 32
    #: The start-up listing that completes the index of held tokens (`controller.holders`): objects per
    #: page, and how long after it an entry no watch event has confirmed is checked by a read.
    index_page_size: int = 500
    index_confirm_after: float = 60.0
    #: A listing's change to a token no object records yet is kept this long (seconds), this many at most:
    #: its object may record the id moments later (its status is written at the end of its reconcile).
    unclaimed_seconds: float = 600.0
    unclaimed_max: int = 10_000


@dataclass(frozen=True)
class OperatorSettings:
    """Everything `apitoken-operator run` configures."""

    #: `namespace/name` of the Secret with apiUrl and apiToken used when an ApiToken names no connection.
    default_connection: str | None = None
    #: Seconds a listing of a connection's tokens is trusted before a reconcile lists again.
    observation_max_age: float = 60.0
    #: Seconds between drift checks: one list call per connection finds tokens changed or deleted outside.
    drift_interval: float = 300.0
    #: Seconds between two status writes that only carry a token's use (lastUsedDate, lastUsedIpAddress):
    #: consumers move these all the time, and a write per drift check per token would load the API server.
    last_used_interval: float = 3600.0
    #: Tokens per page when a connection's tokens are listed (100..10000): the largest page costs the
    #: fewest calls; a smaller one keeps each answer (and the operator's memory while reading it) small.
    list_page_size: int = 10000
    #: Reconciles running at once per connection (per namespace on the default connection). A connection
    #: that hangs or throttles holds only these; the rest of the operator's reconciles serve others.
    connection_reconciles: int = 8
    #: Rotated-out tokens an object may keep in their grace period at once; a rotation or renewal due
    #: while that many are retiring waits until the oldest is deleted.
    max_retiring: int = 3
    #: Seconds the event loop may run late before the liveness probe fails (and Kubernetes restarts it).
    liveness_max_lag: float = 30.0
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
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    observation: ObservationSettings = field(default_factory=ObservationSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    connections: ConnectionSettings = field(default_factory=ConnectionSettings)

    @property
    def foreign_create_window(self) -> float | None:
        """Seconds after its intent within which another process's create may still be running."""
        if not self.peering:
            return None
        return self.dynatrace.retry.deadline + self.replica_clock_skew
