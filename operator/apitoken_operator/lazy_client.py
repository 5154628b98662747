"""Load kubernetes_asyncio's generated models and APIs when first used, not all at import.

`kubernetes_asyncio.client` imports all of its ~770 model and ~66 API modules up front: ~45 MB of the
operator's memory for the dozen it uses (a third of its 150 MB budget at 10,000 ApiTokens). The sync
`kubernetes` client loads them lazily since v35 (a module `__getattr__`, PEP 562); kubernetes_asyncio
36.1 does not yet. This does the same from outside: the three packages' `__init__` files are read as
they ship, their `from … import …` lines become a name → module table, every other statement runs as
written, and a name is imported at its first use. Nothing else changes: submodules import as usual (and are
attributes of their package, as the eager imports made them),
and `getattr(kubernetes_asyncio.client.models, "V1Secret")` (how the client deserializes) works.

Installed by the package's `__init__` (before kopf, which imports the client at its own import).
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

#: the packages whose `__init__` imports everything below it
LAZY_PACKAGES = frozenset(
    {"kubernetes_asyncio.client", "kubernetes_asyncio.client.models", "kubernetes_asyncio.client.api"}
)


#: kubernetes_asyncio versions whose `__init__` files are plain `from … import …` lists (pinned in
#: pyproject.toml; tests/unit/test_lazy_client.py fails if another version is installed and not checked)
CHECKED_VERSIONS = frozenset({"36.1.0"})


def _version() -> str | None:
    try:
        return importlib.metadata.version("kubernetes-asyncio")
    except importlib.metadata.PackageNotFoundError:
        return None


class _LazyPackageLoader(importlib.abc.Loader):
    def __init__(self, original: importlib.machinery.ModuleSpec) -> None:
        self._original = original

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module

    def exec_module(self, module: ModuleType) -> None:
        origin = self._original.origin
        if origin is None:
            raise ImportError(f"{module.__name__}: no __init__ file to read")
        with open(origin, encoding="utf-8") as source:
            tree = ast.parse(source.read(), filename=origin)
        exports: dict[str, tuple[str, str]] = {}
        kept: list[ast.stmt] = []
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
                for alias in node.names:
                    exports[alias.asname or alias.name] = (node.module or "", alias.name)
            else:
                kept.append(node)
        namespace = module.__dict__
        exec(compile(ast.Module(body=kept, type_ignores=[]), origin, "exec"), namespace)  # noqa: S102

        def __getattr__(name: str) -> Any:
            found = exports.get(name)
            if found is not None:
                value = getattr(importlib.import_module(found[0]), found[1])
            elif not name.startswith("_") and importlib.util.find_spec(f"{module.__name__}.{name}"):
                value = importlib.import_module(f"{module.__name__}.{name}")  # a subpackage, as eagerly
            else:
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
            namespace[name] = value
            return value

        def __dir__() -> list[str]:
            return sorted(namespace.keys() | exports.keys())

        namespace["__getattr__"] = __getattr__
        namespace["__dir__"] = __dir__


class _LazyPackageFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in LAZY_PACKAGES:
            return None
        original = importlib.machinery.PathFinder.find_spec(fullname, path)
        if original is None or original.origin is None or not original.submodule_search_locations:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, _LazyPackageLoader(original), origin=original.origin)
        spec.submodule_search_locations = list(original.submodule_search_locations)
        spec.has_location = True
        return spec


def install() -> bool:
    """Load those packages lazily from now on; False when one was imported eagerly already, or when
    kubernetes_asyncio is not a version this was checked against (its `__init__` files may change)."""
    if any(isinstance(finder, _LazyPackageFinder) for finder in sys.meta_path):
        return True
    if any(name in sys.modules for name in LAZY_PACKAGES) or _version() not in CHECKED_VERSIONS:
        return False
    sys.meta_path.insert(0, _LazyPackageFinder())
    return True
