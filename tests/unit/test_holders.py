"""The operator's index of held tokens: what the watch says, completed by the start-up listing."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from apitoken_operator.controller.holders import Holder, TokenHolders


def body(
    uid: str, namespace: str = "team", *, own: str | None = None, retiring: tuple[str, ...] = ()
) -> dict[str, Any]:
    status: dict[str, Any] = {"retiringTokens": [{"id": token_id} for token_id in retiring]}
    if own:
        status["id"] = own
    return {"metadata": {"uid": uid, "namespace": namespace, "name": f"n-{uid}"}, "status": status}


def test_an_object_holds_its_token_and_those_retiring_and_others_see_them_as_taken() -> None:
    index = TokenHolders()
    index.update(body("a", own="dt0c01.A", retiring=("dt0c01.OLD",)))
    index.update(body("b", own="dt0c01.B"))
    assert set(index.holders("dt0c01.OLD")) == {Holder("a", "team", "n-a", "retiring")}
    assert "dt0c01.A" in index.held_by_others("b")
    assert "dt0c01.A" not in index.held_by_others("a")  # its own token is not another's
    assert "dt0c01.OLD" in index.held_by_others("b")
    assert "dt0c01.NONE" not in index.held_by_others("a")
    assert index.holding("team") == 2
    assert index.managed() == 2  # a retiring token is not in use


def test_a_rotation_and_a_deletion_move_the_counts() -> None:
    index = TokenHolders()
    index.update(body("a", own="dt0c01.A"))
    index.update(body("a", own="dt0c01.A2", retiring=("dt0c01.A",)))
    assert index.holding("team") == 1
    assert [h.role for h in index.holders("dt0c01.A")] == ["retiring"]
    index.update(body("a"))  # token deleted, nothing retiring
    assert index.holding("team") == 0
    assert not index.holders("dt0c01.A2")
    index.update(body("b", "other", own="dt0c01.B"))
    index.remove("b")
    assert index.holding("other") == 0 and index.managed() == 0 and len(index) == 0


def test_the_listing_never_overrides_what_a_watch_event_said() -> None:
    index = TokenHolders()
    index.update(body("a", own="dt0c01.NEW"))  # newer than the listing's view
    index.remove("gone")  # deleted after the listing was read
    index.listed([body("a", own="dt0c01.OLD"), body("gone", own="dt0c01.G"), body("c", own="dt0c01.C")])
    index.listing_done()
    assert index.complete
    assert not index.holders("dt0c01.OLD") and not index.holders("dt0c01.G")
    assert [h.uid for h in index.holders("dt0c01.C")] == ["c"]
    assert index.provisional() == {"c": ("team", "n-c")}  # listed, not yet seen by the watch


def test_a_listed_object_is_confirmed_by_its_watch_event_or_dropped_when_a_read_finds_it_gone() -> None:
    index = TokenHolders()
    index.listed([body("a", own="dt0c01.A"), body("b", own="dt0c01.B"), body("c", own="dt0c01.C")])
    index.listing_done()
    index.update(body("a", own="dt0c01.A"))  # the watch's own listing showed it
    assert set(index.provisional()) == {"b", "c"}
    index.confirm("b", exists=True)
    index.confirm("c", exists=False)  # deleted between the two listings: no watch event will say so
    assert index.provisional() == {}
    assert [h.uid for h in index.holders("dt0c01.B")] == ["b"]
    assert not index.holders("dt0c01.C") and index.holding("team") == 2


OBJECTS = st.sampled_from(["a", "b", "c", "d"])
TOKENS = st.sampled_from(["dt0c01.1", "dt0c01.2", "dt0c01.3", "dt0c01.4", "dt0c01.5"])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("update"),
            OBJECTS,
            st.sampled_from(["x", "y"]),
            st.none() | TOKENS,
            st.lists(TOKENS, max_size=2, unique=True),
        ),
        st.tuples(st.just("remove"), OBJECTS),
    ),
    max_size=30,
)


@given(OPERATIONS)
def test_the_index_answers_as_recomputing_from_the_latest_bodies_would(
    operations: list[tuple[Any, ...]],
) -> None:
    index = TokenHolders()
    latest: dict[str, dict[str, Any]] = {}
    for operation in operations:
        if operation[0] == "update":
            _, uid, namespace, own, retiring = operation
            latest[uid] = body(uid, namespace, own=own, retiring=tuple(retiring))
            index.update(latest[uid])
        else:
            latest.pop(operation[1], None)
            index.remove(operation[1])
    held: dict[str, set[str]] = {}
    for uid, item in latest.items():
        status = item["status"]
        held[uid] = {t["id"] for t in status["retiringTokens"]} | (
            {status["id"]} if status.get("id") else set()
        )
    for namespace in ("x", "y"):
        expected = sum(
            1
            for uid, item in latest.items()
            if item["metadata"]["namespace"] == namespace and item["status"].get("id")
        )
        assert index.holding(namespace) == expected
    for uid in ("a", "b", "c", "d"):
        others = index.held_by_others(uid)
        for token_id in ("dt0c01.1", "dt0c01.2", "dt0c01.3", "dt0c01.4", "dt0c01.5"):
            assert (token_id in others) == any(token_id in ids for other, ids in held.items() if other != uid)
