"""The list operation's query: parameters, filtering, sorting and pagination (keyset or offset).

Keyset paging (the default): `nextPageKey` is an opaque cursor (base64url JSON) carrying the whole query,
resolved to absolute times, and the sort key of the last token served. The next page starts strictly
after that key, so tokens created or deleted between two pages never make the walk skip or repeat a
token that existed throughout.

Offset paging (`FaultConfig.paging = "offset"`): `nextPageKey` is what Dynatrace's documented examples
decode to, base64 of a 4-byte big-endian offset, a 4-byte big-endian page size and one byte, e.g.
`AAAAZAAAAGQA` = offset 100, size 100, byte 0. Such a key cannot carry the query, so the rest of the query
(fields, selector, sort, from/to resolved to absolute times) is kept server-side, keyed by the cursor;
the last byte tells apart different queries that reach the same offset with the same page size (0 for
the first, as in the examples). A token deleted between two page calls shifts the next page: a live
token can be skipped (and a created one makes a token repeat). The mode is chosen when the first page
is asked for; a cursor continues in the mode that issued it.

Sorted orders are cached per sort field and invalidated by the store's version counters, so a page
costs a bisect and a slice, not a sort.

Choices where Dynatrace is silent: `fields` must be either all prefixed (`+x,-y`) or none; a raw
`fields` value starting with a bare `+` (which decodes to a space) is a 400 telling the client to
encode it as `%2B`; `-id` is
ignored (the id is always included); unknown query parameters are ignored, except next to
`nextPageKey`; with `from`/`to`, never-used tokens are left out and an absent `to` is now; names sort
case-insensitively; ties break by creation order.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import struct
import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from apitoken_emulator.problems import ApiError, Violation
from apitoken_emulator.store import TokenStore
from apitoken_emulator.tokens import TokenRecord
from apitoken_operator.dynatrace import selector as selectors
from apitoken_operator.dynatrace.dates import DateFormatError, parse_date
from apitoken_operator.dynatrace.models import DEFAULT_LIST_FIELDS, ListField, ParameterLocation

__all__ = ["FollowUpGate", "ListQuery", "OffsetCursors", "Page", "Pager", "Position", "parse_list_query"]

DEFAULT_PAGE_SIZE = 200
MIN_PAGE_SIZE = 100
MAX_PAGE_SIZE = 10000
DEFAULT_FIELDS: tuple[str, ...] = tuple(item.value for item in DEFAULT_LIST_FIELDS)
KNOWN_FIELDS = frozenset(item.value for item in ListField)
SORT_FIELDS = ("name", "lastUsedDate", "creationDate", "expirationDate", "modifiedDate")
#: Where a missing date sorts: never used / never modified first, never expiring last.
_MISSING_RANK = {"lastUsedDate": 0, "modifiedDate": 0, "expirationDate": 2, "creationDate": 0}
_KNOWN_PARAMETERS = ("pageSize", "fields", "apiTokenSelector", "sort", "from", "to")

SortKey = tuple[Any, ...]
#: Where a page starts: None (first page), the sort key to start after (keyset) or an offset.
Position = SortKey | int | None


def _query_violation(name: str, message: str) -> Violation:
    return Violation(name, message, ParameterLocation.QUERY)


@dataclass(frozen=True)
class ListQuery:
    page_size: int = DEFAULT_PAGE_SIZE
    fields: tuple[str, ...] = DEFAULT_FIELDS
    selector: selectors.Selector = field(default_factory=selectors.Selector)
    sort_field: str = "creationDate"
    descending: bool = True
    last_used_from: datetime | None = None
    last_used_to: datetime | None = None

    def cursor(self, after: SortKey) -> str:
        state = {
            "p": self.page_size,
            "f": list(self.fields),
            "s": self.selector.render(),
            "o": ("-" if self.descending else "+") + self.sort_field,
            "from": _to_millis(self.last_used_from),
            "to": _to_millis(self.last_used_to),
            "k": list(after),
        }
        encoded = json.dumps(state, separators=(",", ":")).encode("utf-8")
        return base64.urlsafe_b64encode(encoded).decode("ascii").rstrip("=")

    def filters_usage(self) -> bool:
        return self.last_used_from is not None or self.last_used_to is not None

    def admits(self, record: TokenRecord) -> bool:
        if not self.selector.is_empty() and not self.selector.matches(record):
            return False
        if self.filters_usage():
            used = record.last_used_date
            if used is None:
                return False
            if self.last_used_from is not None and used < self.last_used_from:
                return False
            if self.last_used_to is not None and used > self.last_used_to:
                return False
        return True


def _to_millis(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _from_millis(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def parse_list_query(
    query: Mapping[str, str], *, raw_query: str, now: datetime, offsets: OffsetCursors | None = None
) -> tuple[ListQuery, Position]:
    """The query and, for a follow-up page, where it starts (a sort key or an offset). Raises ApiError."""
    if "nextPageKey" in query:
        others = sorted(key for key in query if key != "nextPageKey")
        if others:
            raise ApiError.invalid(
                [_query_violation(key, "must not be used in combination with nextPageKey") for key in others]
            )
        if offsets is not None and (resolved := offsets.resolve(query["nextPageKey"])) is not None:
            return resolved
        return _decode_cursor(query["nextPageKey"])
    violations: list[Violation] = []
    page_size = _page_size(query.get("pageSize"), violations)
    fields = _fields(query.get("fields"), raw_query, violations)
    selector = selectors.Selector()
    if (text := query.get("apiTokenSelector")) is not None:
        try:
            selector = selectors.parse(text)
        except selectors.SelectorSyntaxError as error:
            violations.append(_query_violation("apiTokenSelector", str(error)))
    sort_field, descending = _sort(query.get("sort"), violations)
    last_used_from = _moment(query, "from", now, violations)
    last_used_to = _moment(query, "to", now, violations)
    if last_used_from is not None and last_used_to is None:
        last_used_to = now
    if last_used_from is not None and last_used_to is not None and last_used_from > last_used_to:
        violations.append(_query_violation("from", "must not be after to"))
    if violations:
        raise ApiError.invalid(violations)
    return (
        ListQuery(
            page_size=page_size,
            fields=fields,
            selector=selector,
            sort_field=sort_field,
            descending=descending,
            last_used_from=last_used_from,
            last_used_to=last_used_to,
        ),
        None,
    )


def _page_size(text: str | None, violations: list[Violation]) -> int:
    if text is None:
        return DEFAULT_PAGE_SIZE
    try:
        value = int(text)
    except ValueError:
        violations.append(_query_violation("pageSize", "must be an integer"))
        return DEFAULT_PAGE_SIZE
    if not MIN_PAGE_SIZE <= value <= MAX_PAGE_SIZE:
        violations.append(
            _query_violation("pageSize", f"must be between {MIN_PAGE_SIZE} and {MAX_PAGE_SIZE}")
        )
    return value


def _raw_values(raw_query: str, name: str) -> list[str]:
    values = []
    for part in raw_query.split("&"):
        key, _, value = part.partition("=")
        if unquote(key.replace("+", " ")) == name:
            values.append(value)
    return values


def _fields(text: str | None, raw_query: str, violations: list[Violation]) -> tuple[str, ...]:
    if text is None:
        return DEFAULT_FIELDS
    # An unencoded "+scopes" arrives as " scopes" and would silently pick fields exactly; a field list
    # whose raw text starts with "+" can only be that mistake ("a,+b" may be an encoded "a, b").
    if any(value.startswith("+") for value in _raw_values(raw_query, "fields")):
        violations.append(
            _query_violation(
                "fields", "a bare '+' decodes to a space: send the + operator URL-encoded as %2B"
            )
        )
        return DEFAULT_FIELDS
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        return DEFAULT_FIELDS
    prefixed = [item for item in items if item[0] in "+-"]
    if prefixed and len(prefixed) != len(items):
        violations.append(
            _query_violation(
                "fields", "either prefix every field with + or -, or list the fields without operators"
            )
        )
        return DEFAULT_FIELDS
    names = [item[1:] if prefixed else item for item in items]
    unknown = [name for name in names if name not in KNOWN_FIELDS]
    if unknown:
        violations.append(
            _query_violation(
                "fields",
                f"unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(KNOWN_FIELDS))}",
            )
        )
        return DEFAULT_FIELDS
    chosen = list(DEFAULT_FIELDS) if prefixed else ["id"]
    for item, name in zip(items, names, strict=True):
        if prefixed and item[0] == "-":
            if name != "id" and name in chosen:
                chosen.remove(name)
        elif name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def _sort(text: str | None, violations: list[Violation]) -> tuple[str, bool]:
    if text is None or not text.strip():
        return "creationDate", True
    value = text.strip()
    descending = value.startswith("-")
    name = value[1:] if value[0] in "+-" else value
    if name not in SORT_FIELDS:
        violations.append(
            _query_violation("sort", f"must be one of {', '.join(SORT_FIELDS)}, with + or - prefix")
        )
        return "creationDate", True
    return name, descending


def _moment(
    query: Mapping[str, str], name: str, now: datetime, violations: list[Violation]
) -> datetime | None:
    text = query.get(name)
    if text is None:
        return None
    try:
        return parse_date(text, now=now)
    except DateFormatError as error:
        violations.append(_query_violation(name, str(error)))
        return None


def _decode_cursor(text: str) -> tuple[ListQuery, SortKey]:
    try:
        padded = text + "=" * (-len(text) % 4)
        state = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        order = str(state["o"])
        fields = tuple(str(item) for item in state["f"])
        if order[1:] not in SORT_FIELDS or not set(fields) <= KNOWN_FIELDS:
            raise ValueError("unknown sort or field")
        key = tuple(state["k"])
        _check_key(order[1:], key)
        query = ListQuery(
            page_size=int(state["p"]),
            fields=fields,
            selector=selectors.parse(str(state["s"])),
            sort_field=order[1:],
            descending=order[0] == "-",
            last_used_from=_from_millis(state["from"]),
            last_used_to=_from_millis(state["to"]),
        )
    except (ValueError, KeyError, TypeError, IndexError, UnicodeError, binascii.Error) as error:
        raise ApiError.invalid(
            [_query_violation("nextPageKey", "is not a cursor this environment issued (or it was altered)")]
        ) from error
    return query, key


def _check_key(sort_field: str, key: SortKey) -> None:
    expected = (str, str, int) if sort_field == "name" else (int, int, int)
    if len(key) != 3 or not all(type(part) is kind for part, kind in zip(key, expected, strict=True)):
        raise ValueError("malformed sort key")


def sort_key(record: TokenRecord, sort_field: str) -> SortKey:
    if sort_field == "name":
        return (record.name.casefold(), record.name, record.sequence)
    moment: datetime | None = {
        "creationDate": record.creation_date,
        "lastUsedDate": record.last_used_date,
        "expirationDate": record.expiration_date,
        "modifiedDate": record.modified_date,
    }[sort_field]
    if moment is None:
        return (_MISSING_RANK[sort_field], 0, record.sequence)
    return (1, int(moment.timestamp() * 1000), record.sequence)


_OFFSET_CURSOR = struct.Struct(">IIB")
#: Offset cursors remembered (least recently used forgotten first): a walk abandoned long ago gets 400.
MAX_OFFSET_CURSORS = 4096


class OffsetCursors:
    """The server-side half of offset cursors: which query each `nextPageKey` continues."""

    def __init__(self, limit: int = MAX_OFFSET_CURSORS) -> None:
        self._limit = limit
        self._queries: OrderedDict[tuple[int, int, int], ListQuery] = OrderedDict()

    def issue(self, query: ListQuery, offset: int) -> str:
        """The cursor of `query`'s page at `offset`; byte 0 unless another query holds that slot."""
        size = query.page_size
        chosen: tuple[int, int, int] | None = None
        for tag in range(256):
            key = (offset, size, tag)
            held = self._queries.get(key)
            if held is None or held == query:
                chosen = key
                break
        if chosen is None:  # 256 different live queries at this offset and size: reuse the oldest slot
            chosen = next(key for key in self._queries if key[:2] == (offset, size))
        self._queries[chosen] = query
        self._queries.move_to_end(chosen)
        while len(self._queries) > self._limit:
            self._queries.popitem(last=False)
        return base64.b64encode(_OFFSET_CURSOR.pack(*chosen)).decode("ascii")

    def resolve(self, text: str) -> tuple[ListQuery, int] | None:
        """The query and offset behind an offset cursor, or None when `text` is not one issued here."""
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except (ValueError, UnicodeError, binascii.Error):
            return None
        if len(raw) != _OFFSET_CURSOR.size:
            return None
        key: tuple[int, int, int] = _OFFSET_CURSOR.unpack(raw)
        query = self._queries.get(key)
        if query is None:
            return None
        self._queries.move_to_end(key)
        return query, key[0]


@dataclass(frozen=True)
class Page:
    """One list answer: its JSON text, and how many tokens it holds (for the size-dependent latency)."""

    text: str
    count: int


@dataclass
class _Order:
    versions: tuple[int, int]
    records: list[TokenRecord]
    keys: list[SortKey]


class FollowUpGate:
    """Holds every follow-up page request (one with `nextPageKey`) until released: a test's way to change
    the store between a listing's pages at a moment it chooses, not one a timer makes likely.

    Thread-safe, because tests run in another thread than the emulator's event loop.
    """

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._waiting = 0
        self._passed = 0

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    @property
    def waiting(self) -> int:
        """Follow-up page requests held right now."""
        with self._lock:
            return self._waiting

    @property
    def passed(self) -> int:
        """Follow-up page requests that were held and then went on (their page read after the release)."""
        with self._lock:
            return self._passed

    async def passage(self) -> None:
        if self._open.is_set():
            return
        with self._lock:
            self._waiting += 1
        try:
            while not self._open.is_set():  # noqa: ASYNC110 - set from another thread (a test's)
                await asyncio.sleep(0.02)
        finally:
            with self._lock:
                self._waiting -= 1
        with self._lock:
            self._passed += 1


class Pager:
    """Serves list pages from a store, caching each sort order until the store changes."""

    def __init__(self, store: TokenStore) -> None:
        self._store = store
        self._orders: dict[str, _Order] = {}
        self.offsets = OffsetCursors()
        self.follow_ups = FollowUpGate()

    def _order(self, sort_field: str) -> _Order:
        usage = self._store.usage_version if sort_field == "lastUsedDate" else 0
        versions = (self._store.version, usage)
        cached = self._orders.get(sort_field)
        if cached is None or cached.versions != versions:
            pairs = sorted(
                ((sort_key(record, sort_field), record) for record in self._store), key=lambda p: p[0]
            )
            cached = _Order(versions, [pair[1] for pair in pairs], [pair[0] for pair in pairs])
            self._orders[sort_field] = cached
        return cached

    def page(
        self,
        query: ListQuery,
        position: Position = None,
        *,
        offset_paging: bool = False,
        owner: str | None = None,
    ) -> Page:
        """The `ApiTokenList` body for one page, as JSON text joined from the records' cached fragments.

        `position` says where the page starts; without one, `offset_paging` picks the cursor kind.
        `owner` limits the listing to that owner's tokens (a personal access token's view).
        """
        order = self._order(query.sort_field)
        records, keys = order.records, order.keys
        if not query.selector.is_empty() or query.filters_usage() or owner is not None:
            kept = [
                index
                for index, record in enumerate(records)
                if query.admits(record) and (owner is None or record.owner == owner)
            ]
            records = [records[index] for index in kept]
            keys = [keys[index] for index in kept]
        next_key: str | None
        if isinstance(position, int) or (position is None and offset_paging):
            offset = position if isinstance(position, int) else 0
            total = len(records)
            if query.descending:
                end = max(0, total - offset)
                chosen = records[max(0, end - query.page_size) : end][::-1]
            else:
                chosen = records[offset : offset + query.page_size]
            more = offset + query.page_size < total
            next_key = self.offsets.issue(query, offset + query.page_size) if more else None
        else:
            after = position
            if query.descending:
                end = len(keys) if after is None else bisect_left(keys, after)
                start = max(0, end - query.page_size)
                chosen = records[start:end][::-1]
                more = start > 0
            else:
                start = 0 if after is None else bisect_right(keys, after)
                end = min(len(keys), start + query.page_size)
                chosen = records[start:end]
                more = end < len(keys)
            next_key = query.cursor(sort_key(chosen[-1], query.sort_field)) if more and chosen else None
        fields = query.fields
        head = json.dumps({"totalCount": len(records), "pageSize": query.page_size, "nextPageKey": next_key})
        tokens = ",".join(record.fragment(fields) for record in chosen)
        return Page(f'{head[:-1]},"apiTokens":[{tokens}]}}', len(chosen))
