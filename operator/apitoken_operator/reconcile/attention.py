"""Does a watch event about an ApiToken call for a reconcile? Pure: the body in, a reason (or None) out.

The operator reconciles from raw watch events rather than kopf's change handlers, which would cost
two extra writes per object (kopf's own finalizer patch and its last-handled-configuration annotation)
and a round trip before the first handler runs. So the operator itself decides which events matter:
everything a user can change (spec → generation, the annotations it reads, the status it keeps) and
everything left half-done; the echo of its own writes and unrelated metadata edits do not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apitoken_operator.api.group import qualified

FINALIZER = qualified("finalizer")
ROTATE_ANNOTATION = qualified("rotate")
CHECK_ANNOTATION = qualified("check")
RELEASE_ANNOTATION = qualified("release")


def needs_reconcile(body: Mapping[str, Any], *, first_sight: bool, last_check: str | None) -> str | None:
    """Why this object needs a reconcile now, or None when its status already answers for it.

    `first_sight`: the operator has not reconciled it since it started (a resume, or a new object);
    `last_check`: the check annotation's value when it last looked.
    """
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    annotations = metadata.get("annotations") or {}
    has_finalizer = FINALIZER in (metadata.get("finalizers") or ())
    if metadata.get("deletionTimestamp"):
        return "being deleted" if has_finalizer else None
    if first_sight:
        return "not looked at since the operator started"
    if not has_finalizer:
        return "its finalizer is missing"
    if status.get("observedGeneration") != metadata.get("generation"):
        return "the spec changed"
    if status.get("pendingCreate"):
        return "a create is pending"
    rotate = annotations.get(ROTATE_ANNOTATION)
    if rotate and rotate != status.get("lastRotationRequest"):
        return "a rotation was requested"
    if annotations.get(CHECK_ANNOTATION) != last_check:
        return "a check was requested"
    if not status.get("conditions"):
        return "its status was cleared"
    return None


def release_requested(body: Mapping[str, Any]) -> bool:
    """Deleting, still held by the finalizer, and annotated to be let go without touching Dynatrace."""
    metadata = body.get("metadata") or {}
    return bool(
        metadata.get("deletionTimestamp")
        and FINALIZER in (metadata.get("finalizers") or ())
        and (metadata.get("annotations") or {}).get(RELEASE_ANNOTATION) == "true"
    )
