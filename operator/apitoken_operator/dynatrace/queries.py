"""The query parameters of the list operation, rendered from typed arguments.

`fields` is explicit about its two meanings, because they differ only by a `+`:

- `exact_fields=False` (the default): the given fields are **added** to the API's default set
  (`id,name,enabled,owner,creationDate`) and rendered `+scopes,+expirationDate`. An item that already
  starts with `+` or `-` is passed as written, so `-owner` removes a default field.
- `exact_fields=True`: the response carries exactly the given fields (plus the id, always), rendered
  without operators; an item with an operator is refused.

The selector is a string in the API's syntax or anything with `render()` (the `Selector` of
`dynatrace/selector.py`), so this module needs no import of it. httpx URL-encodes every value
(`+` becomes `%2B`), as the API requires.

No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from apitoken_operator.dynatrace.errors import ConfigurationError
from apitoken_operator.dynatrace.models import ListField

__all__ = [
    "ALL_FIELDS",
    "MAX_PAGE_SIZE",
    "MIN_PAGE_SIZE",
    "Renderable",
    "list_params",
    "render_fields",
    "render_selector",
]

MIN_PAGE_SIZE = 100
MAX_PAGE_SIZE = 10000
#: Every field the list operation can return: ask for these to read tokens as fully as a get does.
ALL_FIELDS: tuple[ListField, ...] = tuple(ListField)


@runtime_checkable
class Renderable(Protocol):
    """A structured selector: anything that renders itself into the `apiTokenSelector` syntax."""

    def render(self) -> str: ...


def render_fields(fields: Sequence[ListField | str], *, exact: bool = False) -> str:
    """The `fields` parameter: additions to the default set, or (with `exact`) the exact set."""
    if isinstance(fields, str):
        raise ConfigurationError("fields must be a sequence of field names, not one string")
    names = [str(field).strip() for field in fields]
    if not names or any(not name or name in {"+", "-"} for name in names):
        raise ConfigurationError(f"fields must be non-empty field names, got {names!r}")
    if any("," in name for name in names):
        raise ConfigurationError(f"give fields as separate items, not comma-joined: {names!r}")
    if exact:
        if any(name[0] in "+-" for name in names):
            raise ConfigurationError(f"an exact field list cannot add or remove (+/-) fields: {names!r}")
        return ",".join(dict.fromkeys(names))
    return ",".join(dict.fromkeys(name if name[0] in "+-" else f"+{name}" for name in names))


def render_selector(selector: str | Renderable) -> str | None:
    """The `apiTokenSelector` value; None for an empty selector, which selects every token."""
    text = selector if isinstance(selector, str) else selector.render()
    return text if text.strip() else None


def list_params(
    *,
    page_key: str | None = None,
    page_size: int,
    fields: Sequence[ListField | str] | None = None,
    exact_fields: bool = False,
    selector: str | Renderable | None = None,
    sort: str | None = None,
    used_from: str | None = None,
    used_to: str | None = None,
) -> dict[str, str]:
    """The query of one list request. A continuation (`page_key`) carries that key and nothing else."""
    if page_key is not None:
        return {"nextPageKey": page_key}
    if not MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE:
        raise ConfigurationError(f"page size must be {MIN_PAGE_SIZE}..{MAX_PAGE_SIZE}, got {page_size}")
    params = {"pageSize": str(page_size)}
    if fields is not None:
        params["fields"] = render_fields(fields, exact=exact_fields)
    if selector is not None and (rendered := render_selector(selector)) is not None:
        params["apiTokenSelector"] = rendered
    if sort is not None:
        params["sort"] = sort
    if used_from is not None:
        params["from"] = used_from
    if used_to is not None:
        params["to"] = used_to
    return params
