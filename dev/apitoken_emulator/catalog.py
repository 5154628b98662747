"""The reference data shipped with the package: Dynatrace's OpenAPI subset and the scope lists.

They live in `apitoken_emulator/data/` (package data), copied from `shared/dynatrace/` with the one
full example token masked (`mask_secrets`); a test keeps the copies equal to the originals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["ScopeCatalog", "load_openapi", "load_scopes"]


def _read_json(name: str) -> Any:
    return json.loads(resources.files("apitoken_emulator").joinpath("data", name).read_text(encoding="utf-8"))


@cache
def load_openapi() -> dict[str, Any]:
    """The parsed `apitokens-openapi.json`; callers must not mutate it."""
    document: dict[str, Any] = _read_json("apitokens-openapi.json")
    return document


@dataclass(frozen=True)
class ScopeCatalog:
    """Which scope names create and update accept (`settable`) and which only appear on read."""

    settable: frozenset[str]
    read_only: frozenset[str]

    def problem(self, scope: str) -> str | None:
        """Why `scope` cannot be set, or None when it can."""
        if scope in self.settable:
            return None
        if scope in self.read_only:
            return f"scope {scope!r} is a legacy scope that can be read but no longer set"
        return f"unknown scope {scope!r}"


@cache
def load_scopes() -> ScopeCatalog:
    data = _read_json("scopes.json")
    return ScopeCatalog(settable=frozenset(data["settable"]), read_only=frozenset(data["read_only"]))
