"""The CRD is documented (kubectl explain shows every field) and structural."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

CRD = pathlib.Path(__file__).resolve().parents[2] / "crds" / "apitokens.dynatrace.apitokens.io.yaml"


def _walk(schema: dict[str, Any], path: str) -> list[str]:
    # metadata may carry no description (the API server refuses it); map values need none
    exempt = path == ".metadata" or path.endswith(("spec.secret.labels", ".annotations"))
    missing = [] if schema.get("description") or exempt else [path]
    for name, child in (schema.get("properties") or {}).items():
        missing += _walk(child, f"{path}.{name}")
    if "items" in schema and schema["items"].get("type") == "object":
        missing += _walk(schema["items"], f"{path}[]")
    return missing


def test_every_field_has_a_description():
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(schema, "") == []


def test_printer_columns_show_name_id_enabled_ready_expiry_age():
    crd = yaml.safe_load(CRD.read_text())
    columns = {c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert {"Token Name", "ID", "Enabled", "Ready", "Expires", "Age"} <= columns
