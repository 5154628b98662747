"""Which watch events are the echo of this process's own writes, carrying nothing it has not acted on.

Every status write and finalizer patch comes back as a watch event. Reconciling it again would cost a
reconcile per write for nothing, so the writes' resourceVersions are remembered per object, with what
the reconcile acted on (spec generation, deletion, finalizers, the annotations the operator reads).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apitoken_operator.api.group import PREFIX
from apitoken_operator.reconcile.attention import FINALIZER


class EchoFilter:
    def __init__(self) -> None:
        #: uid -> resourceVersions of this process's writes in its last reconcile: the earlier ones, and
        #: the last batch (writes that went out together, their order unknown). Bodies with an earlier
        #: version are stale; the event of the last batch comes after them.
        self._written: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        #: uid -> what the last reconcile acted on (see `inputs`)
        self._acted_on: dict[str, tuple[Any, ...]] = {}

    def forget(self, uid: str) -> None:
        self._written.pop(uid, None)
        self._acted_on.pop(uid, None)

    def wrote(self, uid: str, *versions: str) -> None:
        """These writes went out together (empty versions, of writes that did not happen, are skipped)."""
        earlier, last = self._written.get(uid, ((), ()))
        self._written[uid] = (earlier + last, tuple(v for v in versions if v))

    def begin(self, uid: str, body: Mapping[str, Any], *, adding_finalizer: bool) -> None:
        """A reconcile starts acting on `body`: the versions of older reconciles are not needed now.

        What it acts on includes the finalizer it may add: the events of its own writes can arrive
        before it ends (when it runs from the scheduler, outside kopf's per-object queue), and are echoes.
        """
        if uid in self._written:
            self._written[uid] = ((), self._written[uid][1])
        self._acted_on[uid] = inputs(body, with_finalizer=adding_finalizer)

    def end(self, uid: str, body: Mapping[str, Any]) -> None:
        self._acted_on[uid] = inputs(body)

    def stale(self, body: Mapping[str, Any]) -> bool:
        """This process wrote the object since `body` was read: acting on it would repeat a rotation or a
        replacement (a body from a watch event, or read before waiting for the object's lock)."""
        metadata = body.get("metadata") or {}
        _, last = self._written.get(str(metadata.get("uid")), ((), ()))
        return bool(last) and metadata.get("resourceVersion") not in last

    def own_echo(self, body: Mapping[str, Any]) -> bool:
        """The event of this process's own write, carrying nothing it has not acted on already.

        An earlier write of the same reconcile always qualifies (the event of the later one is still to
        come, carrying any change made meanwhile); the last one only if nobody changed the object's
        inputs in between. Its retry, if any, is already scheduled.
        """
        metadata = body.get("metadata") or {}
        uid = str(metadata.get("uid"))
        earlier, last = self._written.get(uid, ((), ()))
        version = metadata.get("resourceVersion")
        if version in earlier:
            return True
        return version in last and self._acted_on.get(uid) == inputs(body)


def inputs(body: Mapping[str, Any], *, with_finalizer: bool = False) -> tuple[Any, ...]:
    """What, besides its status, decides how an ApiToken is reconciled: spec, deletion, annotations."""
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    finalizers = list(metadata.get("finalizers") or ())
    if with_finalizer and FINALIZER not in finalizers:
        finalizers.append(FINALIZER)
    return (
        metadata.get("generation"),
        metadata.get("deletionTimestamp"),
        tuple(finalizers),
        tuple(sorted((k, v) for k, v in annotations.items() if k.startswith(PREFIX))),
    )
