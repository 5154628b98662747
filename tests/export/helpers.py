"""Shared by the export tests: the CRD's schema as JSON Schema, and a manifest check against it."""

from __future__ import annotations

import functools
import pathlib
import re
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import yaml

CRD = pathlib.Path(__file__).resolve().parents[2] / "crds" / "apitokens.dynatrace.apitokens.io.yaml"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _strip_kubernetes_extensions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _strip_kubernetes_extensions(value)
            for key, value in node.items()
            if not key.startswith("x-kubernetes-")
        }
    if isinstance(node, list):
        return [_strip_kubernetes_extensions(item) for item in node]
    return node


@functools.cache
def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = _strip_kubernetes_extensions(version["schema"]["openAPIV3Schema"])
    return schema


def assert_valid_manifest(document: dict[str, Any]) -> None:
    """What the API server would check: the schema, the CEL rule on spec.name, a DNS-1123 name."""
    assert document["apiVersion"] == "dynatrace.apitokens.io/v1alpha1"
    assert document["kind"] == "ApiToken"
    jsonschema.validate(document, crd_schema(), cls=jsonschema.Draft7Validator)
    assert unknown_fields(document, crd_schema()) == []
    name = document["metadata"]["name"]
    assert DNS_LABEL.match(name) and len(name) <= 63, name
    assert document["spec"]["name"].strip() == document["spec"]["name"]
    assert len(set(document["spec"]["scopes"])) == len(document["spec"]["scopes"])


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the schema does not declare: the API server would prune them silently."""
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, child in value.items():
            if key not in schema["properties"]:
                found.append(f"{path}.{key}")
            else:
                found += unknown_fields(child, schema["properties"][key], f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{index}]")
    return found
