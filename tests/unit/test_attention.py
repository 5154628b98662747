"""Which watch events reconcile an ApiToken: every user change and unfinished step, not the status echo."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apitoken_operator.reconcile.attention import (
    CHECK_ANNOTATION,
    FINALIZER,
    RELEASE_ANNOTATION,
    ROTATE_ANNOTATION,
    needs_reconcile,
    release_requested,
)

SETTLED: dict[str, Any] = {
    "metadata": {"name": "t", "generation": 3, "finalizers": [FINALIZER], "annotations": {}},
    "spec": {"name": "t", "scopes": ["metrics.read"]},
    "status": {
        "observedGeneration": 3,
        "id": "dt0c01.X",
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}


def changed(**edits: Any) -> dict[str, Any]:
    body = copy.deepcopy(SETTLED)
    for path, value in edits.items():
        section, key = path.split("__")
        if value is None:
            body[section].pop(key, None)
        else:
            body[section][key] = value
    return body


def test_a_settled_object_needs_nothing() -> None:
    assert needs_reconcile(SETTLED, first_sight=False, last_check=None) is None


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (changed(metadata__generation=4), "the spec changed"),
        (changed(metadata__finalizers=None), "its finalizer is missing"),
        (changed(metadata__finalizers=["other/finalizer"]), "its finalizer is missing"),
        (changed(status__pendingCreate={"attempt": "a"}), "a create is pending"),
        (changed(metadata__annotations={ROTATE_ANNOTATION: "1"}), "a rotation was requested"),
        (changed(metadata__annotations={CHECK_ANNOTATION: "now"}), "a check was requested"),
        (changed(status__conditions=None), "its status was cleared"),
        (changed(status__observedGeneration=None), "the spec changed"),
        (changed(metadata__deletionTimestamp="2030-01-01T00:00:00Z"), "being deleted"),
    ],
)
def test_what_a_user_changes_or_leaves_half_done_is_reconciled(body: dict[str, Any], why: str) -> None:
    assert needs_reconcile(body, first_sight=False, last_check=None) == why


def test_a_rotation_already_carried_out_is_not_repeated() -> None:
    body = changed(metadata__annotations={ROTATE_ANNOTATION: "1"})
    body["status"]["lastRotationRequest"] = "1"
    assert needs_reconcile(body, first_sight=False, last_check=None) is None


def test_a_check_is_done_once_per_new_value() -> None:
    body = changed(metadata__annotations={CHECK_ANNOTATION: "now"})
    assert needs_reconcile(body, first_sight=False, last_check="now") is None
    assert needs_reconcile(body, first_sight=False, last_check="before") == "a check was requested"


def test_every_object_is_looked_at_once_after_a_start() -> None:
    assert needs_reconcile(SETTLED, first_sight=True, last_check=None) is not None


def test_an_object_being_deleted_that_is_not_ours_any_more_is_left_alone() -> None:
    body = changed(metadata__deletionTimestamp="2030-01-01T00:00:00Z", metadata__finalizers=["x"])
    assert needs_reconcile(body, first_sight=True, last_check=None) is None


@given(
    labels=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=10), max_size=3),
    other=st.dictionaries(st.sampled_from(["note", "owner", "team"]), st.text(max_size=10), max_size=3),
)
def test_unrelated_metadata_edits_do_not_reconcile(labels: dict[str, str], other: dict[str, str]) -> None:
    body = changed(metadata__labels=labels, metadata__annotations=other)
    assert needs_reconcile(body, first_sight=False, last_check=None) is None


def test_release_is_only_for_an_object_being_deleted_and_held_by_us() -> None:
    deleting = changed(
        metadata__deletionTimestamp="2030-01-01T00:00:00Z",
        metadata__annotations={RELEASE_ANNOTATION: "true"},
    )
    assert release_requested(deleting)
    assert not release_requested(changed(metadata__annotations={RELEASE_ANNOTATION: "true"}))
    assert not release_requested({**deleting, "metadata": {**deleting["metadata"], "finalizers": []}})
    not_true = copy.deepcopy(deleting)
    not_true["metadata"]["annotations"][RELEASE_ANNOTATION] = "yes"
    assert not release_requested(not_true)
