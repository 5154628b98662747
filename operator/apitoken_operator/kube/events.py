"""Kubernetes Events on ApiTokens, posted in the background through the operator's own API client.

Not `kopf.event`: kopf posts through a session without a connection limit and a worker per object,
so a burst of a thousand objects opened well over a hundred TLS connections to the API server
(about a third of the operator's memory in that burst). Here a few workers drain one bounded queue
over the shared client's pool; a reconcile never waits for an Event, and when the queue is full an
Event is dropped (the status and the metrics still record what happened).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from apitoken_operator.api.group import API_VERSION, KIND
from apitoken_operator.dynatrace.secrets import mask_secrets
from apitoken_operator.kube.api import Kube, KubeError

logger = logging.getLogger(__name__)

COMPONENT = "dynatrace-apitoken-operator"
MESSAGE_LIMIT = 1024  # the API server's own limit for an Event message
QUEUE_LIMIT = 10_000
WORKERS = 2
#: seconds to finish posting at shutdown
SHUTDOWN_GRACE = 2.0


def event_body(
    apitoken: dict[str, Any], *, type: str, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """A core/v1 Event about one ApiToken, as `kubectl describe` shows it; the message masked."""
    metadata = apitoken.get("metadata") or {}
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{metadata.get('name', 'apitoken')}.",
            "namespace": metadata.get("namespace"),
        },
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
        },
        "type": type,
        "reason": reason,
        "message": mask_secrets(message)[:MESSAGE_LIMIT],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
    }


class EventPoster:
    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self._workers: list[asyncio.Task[None]] = []

    def post(self, body: dict[str, Any], *, type: str, reason: str, message: str) -> None:
        event = event_body(body, type=type, reason=reason, message=message, now=datetime.now(UTC))
        if not self._workers:
            self._workers = [asyncio.create_task(self._work()) for _ in range(WORKERS)]
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            logger.debug("event queue full; dropped %s %s", reason, event["involvedObject"]["name"])

    async def _work(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._kube.create_event(str(event["metadata"]["namespace"]), event)
            except KubeError as error:  # an Event is worth a log line, not a retry
                logger.warning("Event %s not posted: %s", event["reason"], error)
            except Exception:
                logger.exception("Event %s not posted", event["reason"])
            finally:
                self._queue.task_done()

    async def close(self) -> None:
        """Post what is queued (for a moment), then stop."""
        if self._workers:
            try:
                async with asyncio.timeout(SHUTDOWN_GRACE):
                    await self._queue.join()
            except TimeoutError:
                logger.debug("%d Events not posted at shutdown", self._queue.qsize())
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
