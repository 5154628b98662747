"""Which ApiToken holds which Dynatrace token: the operator's own index, kept from the watch events.

Some decisions must know every token id the *other* ApiTokens hold (an adoption must not take one, a
lost create must not settle on one) and how many objects of a namespace hold a token (the default
connection's limit). kopf's index handlers would keep this too, but kopf holds every object's handlers
until every listed object is indexed: at a restart over 10,000 ApiTokens that barrier kept all of them,
and their Secrets, in memory at once (~500 MB). Here the watch events keep the index, one paged listing
at start-up completes it, and only the decisions that need it complete wait for that (`complete`).

A listing and the watch race: an object the listing shows may be deleted before kopf's own listing
(which then never says so). Entries from the listing are provisional until a watch event confirms them,
and those left unconfirmed are checked by a read (`provisional`). No I/O here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

#: the roles a token plays for its holder: the object's own, or rotated out and retiring
OWN, RETIRING = "id", "retiring"


class Holder(NamedTuple):
    uid: str
    namespace: str
    name: str
    role: str


class OthersView:
    """The token ids held by ApiTokens other than `uid` (only `in` is asked of it)."""

    __slots__ = ("_by_token", "_uid")

    def __init__(self, by_token: Mapping[str, Mapping[str, Holder]], uid: str) -> None:
        self._by_token = by_token
        self._uid = uid

    def __contains__(self, token_id: object) -> bool:
        holders = self._by_token.get(token_id) if isinstance(token_id, str) else None
        return bool(holders) and any(uid != self._uid for uid in holders)  # type: ignore[union-attr]


def held_tokens(uid: str, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Holder]:
    """The tokens an object's status says it holds: its own and those retiring after a rotation."""
    held = {
        str(item["id"]): Holder(uid, namespace, name, RETIRING)
        for item in status.get("retiringTokens") or ()
        if isinstance(item, Mapping) and item.get("id")
    }
    if status.get("id"):
        held[str(status["id"])] = Holder(uid, namespace, name, OWN)
    return held


class TokenHolders:
    def __init__(self) -> None:
        #: token id -> uid -> holder
        self._by_token: dict[str, dict[str, Holder]] = {}
        #: uid -> the token ids it holds
        self._by_uid: dict[str, tuple[str, ...]] = {}
        #: namespace -> objects holding a token of their own
        self._holding: Counter[str] = Counter()
        self._own: dict[str, str] = {}  # uid -> namespace, for objects holding a token of their own
        #: uids the start-up listing added and no watch event has confirmed yet
        self._provisional: dict[str, tuple[str, str]] = {}
        #: until the listing is in: uids a watch event has told about (the event is newer or as new)
        self._told: set[str] | None = set()

    @property
    def complete(self) -> bool:
        """The start-up listing is in."""
        return self._told is None

    # --- the watch ---------------------------------------------------------------------------------

    def update(self, body: Mapping[str, Any]) -> None:
        """An object as a watch event shows it (not deleted)."""
        metadata = body.get("metadata") or {}
        uid = str(metadata.get("uid") or "")
        if not uid:
            return
        if self._told is not None:
            self._told.add(uid)
        self._provisional.pop(uid, None)
        self._set(
            uid,
            held_tokens(
                uid, metadata.get("namespace", ""), metadata.get("name", ""), body.get("status") or {}
            ),
        )

    def remove(self, uid: str) -> None:
        """The object is gone."""
        if self._told is not None:
            self._told.add(uid)
        self._provisional.pop(uid, None)
        self._set(uid, {})

    # --- the start-up listing ----------------------------------------------------------------------

    def listed(self, items: Iterable[Mapping[str, Any]]) -> None:
        """A page of the start-up listing: objects no watch event has told about yet, provisionally."""
        told = self._told if self._told is not None else set()
        for body in items:
            metadata = body.get("metadata") or {}
            uid = str(metadata.get("uid") or "")
            if not uid or uid in told or uid in self._by_uid:
                continue
            namespace, name = metadata.get("namespace", ""), metadata.get("name", "")
            held = held_tokens(uid, namespace, name, body.get("status") or {})
            if held:
                self._provisional[uid] = (namespace, name)
                self._set(uid, held)

    def listing_done(self) -> None:
        self._told = None

    def provisional(self) -> dict[str, tuple[str, str]]:
        """uid -> (namespace, name) of the listed objects no watch event has confirmed."""
        return dict(self._provisional)

    def confirm(self, uid: str, *, exists: bool) -> None:
        """A read settled a provisional entry: the object exists (kept), or is gone (dropped)."""
        if self._provisional.pop(uid, None) is not None and not exists:
            self._set(uid, {})

    # --- questions ---------------------------------------------------------------------------------

    def holders(self, token_id: str) -> Iterable[Holder]:
        return tuple(self._by_token.get(token_id, {}).values())

    def held_by_others(self, uid: str) -> OthersView:
        return OthersView(self._by_token, uid)

    def holding(self, namespace: str) -> int:
        """ApiTokens of `namespace` holding a token of their own (not only retiring ones)."""
        return self._holding[namespace]

    def managed(self) -> int:
        """Tokens in use by an object (those only retiring after a rotation are not counted)."""
        return sum(1 for holders in self._by_token.values() if any(h.role == OWN for h in holders.values()))

    def __len__(self) -> int:
        return len(self._by_uid)

    # --- the one place that changes the maps -------------------------------------------------------

    def _set(self, uid: str, held: Mapping[str, Holder]) -> None:
        for token_id in self._by_uid.pop(uid, ()):
            holders = self._by_token.get(token_id)
            if holders is not None:
                holders.pop(uid, None)
                if not holders:
                    del self._by_token[token_id]
        namespace = self._own.pop(uid, None)
        if namespace is not None:
            self._holding[namespace] -= 1
            if self._holding[namespace] <= 0:
                del self._holding[namespace]
        if not held:
            return
        self._by_uid[uid] = tuple(held)
        for token_id, holder in held.items():
            self._by_token.setdefault(token_id, {})[uid] = holder
            if holder.role == OWN:
                self._own[uid] = holder.namespace
                self._holding[holder.namespace] += 1
