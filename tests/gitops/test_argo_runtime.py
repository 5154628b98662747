"""The argo-health checker itself: it must set up gopher-lua as Argo CD does, or the script tests mean little.

Argo CD's util/lua: no standard libraries for argocd-cm scripts, then package, base, table and a "safe os"
(time, date) reachable through require; the object converted to tables; a 1 s deadline; the returned
table read as {status, message}, a status outside the health codes becoming Unknown.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.gitops import ArgoHealth, CheckFailed

OBJ: dict[str, Any] = {
    "apiVersion": "dynatrace.apitokens.io/v1alpha1",
    "kind": "ApiToken",
    "metadata": {"name": "t", "generation": 7, "labels": {"a": "b"}},
    "spec": {"scopes": ["x", None, "y"], "enabled": False, "ratio": 0.5},
}


Lua = Callable[..., tuple[str, str]]


@pytest.fixture
def lua(tmp_path: pathlib.Path, argo_health: ArgoHealth) -> Lua:
    def run(source: str, obj: dict[str, Any] = OBJ, open_libs: bool = False) -> tuple[str, str]:
        script = tmp_path / "health.lua"
        script.write_text(source)
        return argo_health(obj, script=script, open_libs=open_libs)

    return run


def test_the_object_is_the_global_obj_converted_like_argo_cd(lua: Lua) -> None:
    source = """
    local m = obj.metadata
    return {status = "Healthy", message = type(m.generation) .. " " .. (m.generation + 1) .. " "
      .. type(obj.spec.enabled) .. " " .. tostring(obj.spec.enabled) .. " " .. obj.spec.ratio .. " "
      .. #obj.spec.scopes .. " " .. obj.spec.scopes[2] .. " " .. m.labels.a .. " " .. tostring(obj.status)}
    """
    # Numbers are numbers, bools bools; a null array item is dropped (LTable.Append skips nil).
    assert lua(source) == ("Healthy", "number 8 boolean false 0.5 2 y b nil")


def test_without_open_libs_only_base_table_package_and_require_os(lua: Lua) -> None:
    source = """
    local os_mod = require("os")
    return {status = "Healthy", message = tostring(string) .. " " .. tostring(math) .. " " .. tostring(io)
      .. " " .. tostring(os) .. " " .. type(table.insert) .. " " .. type(os_mod.time) .. " "
      .. type(os_mod.date) .. " " .. tostring(os_mod.execute) .. " " .. tostring(table.time)}
    """
    assert lua(source) == ("Healthy", "nil nil nil nil function function function nil nil")
    everything = 'return {status = "Healthy", message = type(string.format) .. " " .. type(os.execute)}'
    assert lua(everything, open_libs=True) == ("Healthy", "function function")


def test_a_status_outside_argo_cds_codes_is_unknown(lua: Lua) -> None:
    assert lua('return {status = "Fine", message = "x"}') == (
        "Unknown",
        "Lua returned an invalid health status",
    )
    assert lua("return {}") == ("Unknown", "Lua returned an invalid health status")
    for code in ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"):
        assert lua(f'return {{status = "{code}"}}') == (code, "")


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("return 1", "expect table output from Lua script, not number"),
        ("return nil", "expect table output from Lua script, not nil"),
        ("error('boom')", "boom"),
        ("while true do end", "context deadline exceeded"),  # Argo CD gives scripts 1 s
        ('return {status = "Healthy", message = 3}', "cannot unmarshal number"),
        ('local t = {status = "Healthy"}; t.self = t; return t', "recursively nested table"),
    ],
)
def test_failures_are_reported(lua: Lua, source: str, error: str) -> None:
    with pytest.raises(CheckFailed, match=error):
        lua(source)
