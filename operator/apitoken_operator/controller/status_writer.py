"""How a reconcile writes the ApiToken's status, and the Events it posts about it.

A status write costs a Kubernetes write and a watch event, so writes are saved where safety allows:
a patch that needs no durability of its own is deferred to go out with the next one, a write that
would change nothing is skipped, and the finalizer patch goes out beside the first write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from apitoken_operator.controller.echoes import EchoFilter
from apitoken_operator.controller.gather import Work
from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.kube.api import Kube, KubeError
from apitoken_operator.reconcile.attention import FINALIZER
from apitoken_operator.reconcile.effects import Announcement
from apitoken_operator.reconcile.status import Outcome, conditions, same_conditions, token_fields

logger = logging.getLogger(__name__)


class EventSink(Protocol):
    def __call__(self, body: dict[str, Any], *, type: str, reason: str, message: str) -> None: ...


class StatusWriter:
    def __init__(
        self,
        kube: Kube,
        *,
        echoes: EchoFilter,
        clock: Callable[[], datetime],
        last_used_interval: float,
    ) -> None:
        self._kube = kube
        self._echoes = echoes
        self._clock = clock
        self._last_used_interval = last_used_interval

    async def write(
        self, work: Work, patch: dict[str, Any], *, defer: bool = False, conditional: bool = False
    ) -> None:
        """Patch the status, or with `defer` only record the patch, to go out with the next write.

        Deferring is for what needs no durability of its own (the Secret already records it, or the
        step is safe to repeat): it saves one Kubernetes write per step. An intent is never deferred.
        `conditional`: only onto the version this reconcile last read or wrote (409 otherwise).
        """
        if defer:
            work.deferred_status = combine_patches(work.deferred_status, patch)
            work.body["status"] = merge_patch(work.status, patch)
            return
        patch = combine_patches(work.deferred_status, patch)
        version = work.metadata.get("resourceVersion") if conditional else None
        writing = self._kube.patch_apitoken_status(work.namespace, work.name, patch, resource_version=version)
        finalizer_version, written = await asyncio.gather(self._finalizer_added(work), writing)
        work.deferred_status = {}
        work.body["status"] = written.get("status") or {}
        version = written.get("metadata", {}).get("resourceVersion")
        work.metadata["resourceVersion"] = version
        self._echoes.wrote(work.uid, version or "", finalizer_version)

    async def await_finalizer(self, work: Work) -> None:
        """Wait for the finalizer patch begun beside the reconcile (if any), before anything changes."""
        if work.finalizing is not None:
            self._echoes.wrote(work.uid, await self._finalizer_added(work))

    @staticmethod
    async def _finalizer_added(work: Work) -> str:
        """Wait for the finalizer patch begun beside the reconcile; its resourceVersion ("" if none)."""
        if work.finalizing is None:
            return ""
        version = await work.finalizing
        work.finalizing = None
        work.metadata["finalizers"] = [*(work.metadata.get("finalizers") or []), FINALIZER]
        return version

    async def settle(
        self,
        work: Work,
        outcome: Outcome,
        *,
        token: ApiToken | None = None,
        extra: dict[str, Any] | None = None,
    ) -> bool:
        """Write the outcome (and the observed token) when it changes anything; False if the write failed."""
        patch: dict[str, Any] = {**self.conditions(work, outcome), **(extra or {})}
        if token is not None:
            patch.update(
                token_fields(token, reported=work.status, last_used_interval=self._last_used_interval)
            )
        if not changes(work.status, patch) and not work.deferred_status:
            return True
        try:
            await self.write(work, patch)
        except KubeError as error:
            logger.warning("%s: status not written: %s", work.reference, error)
            return False
        return True

    def conditions(self, work: Work, outcome: Outcome) -> dict[str, Any]:
        """Conditions with the generation they describe (kstatus reads both together)."""
        return {
            "observedGeneration": work.metadata.get("generation"),
            "conditions": conditions(
                outcome,
                generation=work.metadata.get("generation"),
                previous=work.status.get("conditions") or [],
                now=self._clock(),
            ),
        }


class Announcer:
    """Posts an object's Events: Warnings always, Normal ones unless `--events warnings`."""

    def __init__(self, sink: EventSink, *, normal_events: bool) -> None:
        self._sink = sink
        self._normal = normal_events

    def __call__(self, work: Work, said: Announcement) -> None:
        work.announced.add(str(said.reason))
        if said.kind == "Warning" or self._normal:
            self._sink(work.body, type=said.kind, reason=str(said.reason), message=said.message)


def changes(status: dict[str, Any], patch: dict[str, Any]) -> bool:
    """Whether the patch would change the status (conditions compared but for their transition times)."""
    for key, value in patch.items():
        if key == "conditions":
            if not same_conditions(status.get("conditions") or [], value):
                return True
        elif status.get(key) != value:
            return True
    return False


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch of plain dicts, as the API server applies it (None removes a key)."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = value
    return result


def combine_patches(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One merge patch doing what `first` then `second` would (a None, "remove", is kept as such)."""
    result = dict(first)
    for key, value in second.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = combine_patches(result[key], value)
        else:
            result[key] = value
    return result
