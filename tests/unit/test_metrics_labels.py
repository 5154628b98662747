"""Metrics carry no token ids: one series per ApiToken, across rotations (issue #14)."""

from __future__ import annotations

from datetime import UTC, datetime

from apitoken_operator.metrics import Metrics


def test_the_expiry_series_is_per_object_and_names_no_token() -> None:
    metrics = Metrics()
    first, second = datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 2, 1, tzinfo=UTC)
    metrics.expiry(namespace="team", name="m", token_id="dt0c01.AAAAAAAAAAAAAAAAAAAAAAAA", expires=first)
    metrics.expiry(namespace="team", name="m", token_id="dt0c01.BBBBBBBBBBBBBBBBBBBBBBBB", expires=second)
    metrics.reconciled(namespace="team", name="m", health="Ready", reason="Ready")
    samples = [sample for family in metrics.registry.collect() for sample in family.samples]
    assert not any("dt0c01" in value for sample in samples for value in sample.labels.values())
    assert not any("token_id" in sample.labels for sample in samples)
    expiry = [s for s in samples if s.name == "apitoken_operator_token_expiration_timestamp_seconds"]
    assert [(s.labels, s.value) for s in expiry] == [({"namespace": "team", "name": "m"}, second.timestamp())]
    metrics.expiry(namespace="team", name="m", token_id=None, expires=None)
    samples = [sample for family in metrics.registry.collect() for sample in family.samples]
    assert not [s for s in samples if s.name == "apitoken_operator_token_expiration_timestamp_seconds"]
