"""The CRD is generated from the models, documented (kubectl explain shows every field) and structural.

The session's control plane installs crds/ (tests/fixtures/cluster.py), so every control-plane test runs
against the generated CRD; the byte-for-byte test below is what makes that true.
"""

from __future__ import annotations

import contextlib
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import yaml

from apitoken_devenv.paths import default_crd_files
from apitoken_operator.api import crd, group
from tests.fixtures.cluster import installed_crds

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "apitokens.dynatrace.apitokens.io.yaml"
COPIES = (
    ROOT / "charts" / "dynatrace-apitoken-operator" / "files" / "crds" / CRD.name,
    ROOT / "deploy" / "crds" / CRD.name,
)


def _walk(schema: dict[str, Any], path: str) -> list[str]:
    # metadata may carry no description (the API server refuses it); map values need none
    exempt = path == ".metadata" or path.endswith(("spec.secret.labels", ".annotations"))
    missing = [] if schema.get("description") or exempt else [path]
    for name, child in (schema.get("properties") or {}).items():
        missing += _walk(child, f"{path}.{name}")
    if "items" in schema and schema["items"].get("type") == "object":
        missing += _walk(schema["items"], f"{path}[]")
    return missing


def _schema() -> dict[str, Any]:
    result: dict[str, Any] = crd.definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return result


def test_crds_and_both_copies_are_the_generated_crd_byte_for_byte() -> None:
    generated = crd.render().encode("utf-8")
    for path in (CRD, *COPIES):
        assert path.read_bytes() == generated, f"{path.relative_to(ROOT)} is stale: run scripts/sync_crd.py"
    assert default_crd_files() == [CRD], "crds/ holds only generated CRDs"


def test_the_file_says_it_is_generated_and_parses_to_the_definition() -> None:
    text = CRD.read_text()
    assert text.startswith(crd.HEADER) and "scripts/sync_crd.py" in crd.HEADER
    assert yaml.safe_load(text) == crd.definition()


def test_every_field_has_a_description() -> None:
    assert _walk(_schema(), "") == []


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from _nodes(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _nodes(schema[key], f"{path}[{key}]")


def test_the_schema_is_structural() -> None:
    """No references, unions or pydantic titles; every node typed; no `default: null` (unset is absent)."""
    for path, node in _nodes(_schema()):
        assert not {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title"} & node.keys(), path
        assert node.get("type") in {"object", "array", "string", "integer", "boolean"}, path
        assert "default" not in node or node["default"] is not None, path


def test_the_flattening_refuses_what_it_cannot_express() -> None:
    union = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    with pytest.raises(ValueError, match="Optional"):
        crd.structural(union)
    optional = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "X"}
    assert crd.structural(optional) == {"type": "string"}


def test_printer_columns_show_name_id_enabled_ready_expiry_age() -> None:
    columns = {c["name"] for c in crd.definition()["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert {"Token Name", "ID", "Enabled", "Ready", "Expires", "Age"} <= columns


def test_names_come_from_the_group_module() -> None:
    spec = crd.definition()["spec"]
    assert (spec["group"], spec["versions"][0]["name"]) == (group.GROUP, group.VERSION)
    assert (spec["names"]["kind"], spec["names"]["plural"]) == (group.KIND, group.PLURAL)
    assert crd.definition()["metadata"]["name"] == group.CRD_NAME == CRD.stem


# --- the generated CRD in the real kube-apiserver --------------------------------------------------------


@contextlib.contextmanager
def _generated_under_another_group(k8s: kubernetes.client.ApiClient) -> Iterator[tuple[str, str]]:
    """`crd.definition()` as it is but for its group (the session already serves the real one)."""
    other = f"t{uuid.uuid4().hex[:8]}.generated.test"
    definition = crd.definition()
    definition["metadata"]["name"] = f"{group.PLURAL}.{other}"
    definition["spec"]["group"] = other
    with installed_crds(k8s, [definition]):
        yield other, group.VERSION


@pytest.mark.controlplane
def test_the_generated_crd_is_accepted_and_enforces_its_rules(
    k8s: kubernetes.client.ApiClient, namespace: str
) -> None:
    custom = kubernetes.client.CustomObjectsApi(k8s)
    with _generated_under_another_group(k8s) as (other, version):

        def create(name: str, spec: dict[str, Any]) -> dict[str, Any]:
            body = {"apiVersion": f"{other}/{version}", "kind": group.KIND, "metadata": {"name": name}}
            result: dict[str, Any] = custom.create_namespaced_custom_object(
                other, version, namespace, group.PLURAL, {**body, "spec": spec}, field_validation="Strict"
            )
            return result

        made = create("good", {"name": "web", "scopes": ["metrics.read"], "secret": {}, "rotation": {}})
        assert made["spec"]["enabled"] is False and made["spec"]["deletionPolicy"] == "Delete"
        assert made["spec"]["secret"]["key"] == "token" and made["spec"]["rotation"]["gracePeriod"] == "1h"
        assert made["status"]["observedGeneration"] == 0  # status defaulted: kstatus sees it in progress
        rejected = {
            "padded": ({"name": " web ", "scopes": ["a"]}, "must not start or end with whitespace"),
            "dupes": ({"name": "web", "scopes": ["a", "a"]}, "Duplicate value"),
            "grace": ({"name": "web", "scopes": ["a"], "rotation": {"gracePeriod": "1 hour"}}, "gracePeriod"),
            "labels": ({"name": "web", "scopes": ["a"], "secret": {"labels": {"a b": "c"}}}, "label keys"),
            "policy": ({"name": "web", "scopes": ["a"], "deletionPolicy": "Keep"}, "deletionPolicy"),
        }
        for name, (spec, message) in rejected.items():
            with pytest.raises(kubernetes.client.ApiException) as error:
                create(name, spec)
            assert error.value.status == 422 and message in error.value.body, (name, error.value.body)
