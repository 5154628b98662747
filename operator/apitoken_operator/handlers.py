"""kopf registrations only: each handler translates a kopf call into a call on the `Runtime`.

ApiTokens are reconciled from raw watch events (`kopf.on.event`), not kopf's change handlers: those
cost two extra writes per object (kopf's finalizer and its last-handled-configuration annotation)
and a round trip before the first handler runs. `reconcile.attention` decides which events matter;
the reconciler adds and removes its own finalizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf

from apitoken_operator.api import group
from apitoken_operator.controller.runtime import Options, Runtime
from apitoken_operator.dynatrace.secrets import install_log_masking
from apitoken_operator.metrics import Metrics
from apitoken_operator.reconcile.secret_layout import MANAGED_BY_LABEL, MANAGED_BY_VALUE

#: kopf marks its storage prefix and ignores every annotation under it, so it must not be the prefix of
#: the annotations users set (rotate, check, release).
ANNOTATION_PREFIX = f"kopf.{group.GROUP}"
#: kopf removes *its* finalizer from objects no change handler needs: never let that be ours
KOPF_FINALIZER = f"kopf.{group.GROUP}/unused"
RESOURCE = (group.GROUP, group.VERSION, group.PLURAL)


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds a diff base (a deep copy of the object, less its metadata) for every watch event, and
    reads the last one back from an annotation, for change handlers and daemons: this operator has
    neither, so the copy was pure cost (~3 % of a restart's CPU, measured with py-spy). Nothing is kept,
    nothing is stored; kopf's diffs come out empty."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class Operator:
    """The registry's handlers and the runtime they share (made when kopf starts the operator)."""

    def __init__(self, options: Options, *, metrics: Metrics | None = None) -> None:
        self.options = options
        self.metrics = metrics or Metrics()
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise kopf.TemporaryError("the operator is still starting", delay=1)
        return self._runtime

    async def start(self) -> None:
        self._runtime = await Runtime.start(self.options, metrics=self.metrics)

    async def stop(self) -> None:
        if self._runtime is not None:
            await self._runtime.close()


def build_registry(operator: Operator) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        install_log_masking()
        settings.persistence.finalizer = KOPF_FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = NoDiffBase()
        settings.posting.enabled = False  # Events go through kube.events; log lines are never posted
        settings.posting.loggers = False
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.queueing.idle_timeout = 1.0  # a per-object worker with nothing to do goes soon
        settings.execution.max_workers = 4  # for sync code only; our handlers are async
        # Watch only the Secrets the operator manages, filtered by the API server: the operator never
        # receives (or keeps in memory) the data of anybody else's Secrets.
        settings.watching.label_selectors["v1", "secrets"] = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
        await operator.start()

    @kopf.on.probe(id="event_loop_lag_seconds", registry=registry)
    async def event_loop_lag(**_: Any) -> float:
        """Fails the liveness probe when the event loop falls far behind (see controller.heartbeat)."""
        heartbeat = operator.runtime.heartbeat
        problem = heartbeat.problem(max_lag=operator.options.settings.liveness_max_lag)
        if problem is not None:
            raise kopf.PermanentError(problem)
        return round(heartbeat.lag, 3)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """kopf's credentials are the operator client's (kube.api.connect): with --kubeconfig that file
        (the runner exports it as $KUBECONFIG, which kopf reads), even in a pod with a ServiceAccount
        token mounted; without it the ServiceAccount, then $KUBECONFIG or ~/.kube/config."""
        if operator.options.kubeconfig:
            return kopf.login_with_kubeconfig(**kwargs)
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await operator.stop()

    @kopf.on.event(*RESOURCE, id="reconcile", registry=registry)
    async def apitoken_event(event: kopf.RawEvent, body: kopf.Body, **kwargs: Any) -> None:
        await operator.runtime.apitoken_event(event.get("type"), body)

    @kopf.on.event(
        "",
        "v1",
        "secrets",
        labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        id="secret_changed",
        registry=registry,
    )
    async def secret_changed(event: kopf.RawEvent, body: kopf.Body, **kwargs: Any) -> None:
        operator.runtime.secret_changed(event.get("type"), body)

    return registry
