"""Prometheus metrics, in one place: Dynatrace calls, reconcile outcomes, managed tokens, expiry, rotations.

Labels never carry a secret: token ids (`dt0c01.<public part>`) are safe to show. The collectors
live on a registry passed in (a fresh one in tests), served by `serve()` on the metrics port.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from apitoken_operator.dynatrace.client import CallEvent

NAMESPACE = "apitoken_operator"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.api_calls = Counter(
            "dynatrace_api_calls",
            "Dynatrace Tokens API requests, by operation and HTTP status or error.",
            ["operation", "status"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.api_latency = Histogram(
            "dynatrace_api_call_duration_seconds",
            "Dynatrace Tokens API request duration.",
            ["operation"],
            namespace=NAMESPACE,
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.reconciles = Counter(
            "reconciles",
            "Reconcile outcomes, by health (Ready, Reconciling, Stalled) and reason.",
            ["health", "reason"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.tokens_managed = Gauge(
            "tokens_managed",
            "ApiTokens that record a Dynatrace token.",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.token_expiry = Gauge(
            "token_expiration_timestamp_seconds",
            "When each managed token expires (absent: never).",
            ["namespace", "name", "token_id"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.token_ready = Gauge(
            "token_ready",
            "1 when the ApiToken is Ready, 0 otherwise.",
            ["namespace", "name"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.rotations = Counter(
            "rotations",
            "Tokens replaced by a rotation (on request or before expiry).",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self._expiry_labels: dict[tuple[str, str], str] = {}

    def on_call(self, event: CallEvent) -> None:
        self.api_calls.labels(event.operation, event.outcome).inc()
        self.api_latency.labels(event.operation).observe(event.seconds)

    def reconciled(self, *, namespace: str, name: str, health: str, reason: str) -> None:
        self.reconciles.labels(health, reason).inc()
        self.token_ready.labels(namespace, name).set(1 if health == "Ready" else 0)

    def expiry(self, *, namespace: str, name: str, token_id: str | None, expires: datetime | None) -> None:
        previous = self._expiry_labels.pop((namespace, name), None)
        if previous is not None and previous != token_id:
            self.token_expiry.remove(namespace, name, previous)
        if token_id and expires is not None:
            self.token_expiry.labels(namespace, name, token_id).set(expires.timestamp())
            self._expiry_labels[namespace, name] = token_id
        elif previous is not None and previous == token_id:
            self.token_expiry.remove(namespace, name, previous)

    def forget(self, *, namespace: str, name: str) -> None:
        self.expiry(namespace=namespace, name=name, token_id=None, expires=None)
        with contextlib.suppress(KeyError):
            self.token_ready.remove(namespace, name)

    def count_managed(self, count: Callable[[], float]) -> None:
        self.tokens_managed.set_function(count)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - inside a pod
        start_http_server(port, addr=address, registry=self.registry)
