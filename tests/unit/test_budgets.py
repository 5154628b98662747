"""Connection budgets: a spent budget parks its objects, never another budget's; places free in order."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from apitoken_operator.controller.budgets import Budgets

HANGING, HEALTHY = ("team-a", "slow-connection"), ("team-b", "(default)")


def budgets(per_budget: int = 2) -> tuple[Budgets, list[Hashable]]:
    woken: list[Hashable] = []
    return Budgets(per_budget=per_budget, wake=woken.append), woken


def test_a_spent_budget_parks_only_its_own_objects() -> None:
    limits, woken = budgets()
    assert limits.try_enter(HANGING, key="a1") and limits.try_enter(HANGING, key="a2")
    assert not limits.try_enter(HANGING, key="a3")  # parked, no slot held
    assert limits.try_enter(HEALTHY, key="b1")  # another tenant is not held up
    assert (limits.running(HANGING), limits.parked(HANGING), limits.running(HEALTHY)) == (2, 1, 1)
    assert woken == []


def test_parked_objects_are_woken_in_arrival_order_one_per_freed_place() -> None:
    limits, woken = budgets(per_budget=1)
    assert limits.try_enter(HANGING, key="a1")
    for key in ("a2", "a3", "a2"):  # a2 parks twice: it keeps its first place, once
        assert not limits.try_enter(HANGING, key=key)
    limits.leave(HANGING)
    assert woken == ["a2"]
    assert limits.try_enter(HANGING, key="a2")
    limits.leave(HANGING)
    assert woken == ["a2", "a3"]
    assert limits.try_enter(HANGING, key="a3")
    limits.leave(HANGING)
    assert woken == ["a2", "a3"] and limits.parked(HANGING) == 0 and limits.running(HANGING) == 0


def test_entering_clears_a_parked_key() -> None:
    limits, woken = budgets(per_budget=1)
    assert limits.try_enter(HANGING, key="a1")
    assert not limits.try_enter(HANGING, key="a2")
    limits.leave(HANGING)  # wakes a2 ...
    assert limits.try_enter(HANGING, key="a3")  # ... but a newcomer of the same budget is faster
    assert not limits.try_enter(HANGING, key="a2")  # a2 parks again
    limits.leave(HANGING)
    assert woken == ["a2", "a2"]


def test_a_budget_allows_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Budgets(per_budget=0)
