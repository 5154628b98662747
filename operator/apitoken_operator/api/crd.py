"""The ApiToken CustomResourceDefinition, generated from the models (as controller-gen does for Go).

pydantic's JSON schema is not what Kubernetes accepts: a CRD schema must be structural, so references
(`$ref`, `$defs`) are inlined, `Optional[X]` (`anyOf` with null) becomes X (an absent field is how the
API expresses "unset"), `title` and `default: null` are dropped, and the `x-kubernetes-*` keys are kept.

    python scripts/sync_crd.py    # writes crds/ and its copies from `definition()`
"""

from __future__ import annotations

from typing import Any

from apitoken_operator.api import group
from apitoken_operator.api.v1alpha1 import ApiToken

__all__ = ["HEADER", "definition", "render", "structural"]

HEADER = (
    "# The ApiToken CRD, used by `kubectl apply -f crds/`, deploy/ (kustomize) and the Helm chart.\n"
    "# Generated from operator/apitoken_operator/api/v1alpha1.py by operator/apitoken_operator/api/crd.py:\n"
    "# do not edit; change the models and run `python scripts/sync_crd.py` (which also writes the copies).\n"
)

#: `kubectl get` columns: (name, type, JSONPath, priority; 0 shows in the default view, 1 with -o wide)
PRINTER_COLUMNS: tuple[tuple[str, str, str, int], ...] = (
    ("Token Name", "string", ".spec.name", 0),
    ("ID", "string", ".status.id", 0),
    ("Enabled", "boolean", ".spec.enabled", 0),
    ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status', 0),
    ("Reason", "string", '.status.conditions[?(@.type=="Ready")].reason', 1),
    ("Expires", "string", ".status.expirationDate", 0),
    ("Renews", "string", ".status.nextRenewal", 1),
    ("Secret", "string", ".status.secretName", 1),
    ("Age", "date", ".metadata.creationTimestamp", 0),
)

#: pydantic keywords a structural schema has no use for
_DROPPED = frozenset({"title"})
#: the order keys are written in, for a file people read; the rest follow in pydantic's order
_ORDER = (
    "type",
    "format",
    "description",
    "required",
    "enum",
    "default",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "maxProperties",
    "pattern",
)


def structural(schema: dict[str, Any], definitions: dict[str, Any] | None = None) -> dict[str, Any]:
    """`schema` (pydantic's JSON schema) as a Kubernetes structural schema: inlined and flattened."""
    definitions = schema.get("$defs", {}) if definitions is None else definitions
    node = dict(schema)
    node.pop("$defs", None)
    if "$ref" in node:  # a nested model: its definition, overridden by the field's own keys
        name = node.pop("$ref").rsplit("/", 1)[-1]
        node = {**definitions[name], **node}
    if "anyOf" in node:  # Optional[X]: X
        choices = [c for c in node.pop("anyOf") if c.get("type") != "null"]
        if len(choices) != 1:
            raise ValueError(f"a union other than Optional[X] has no structural form: {choices}")
        node = {**structural(choices[0], definitions), **node}
    if node.get("default", ...) is None:
        del node["default"]
    if node.get("additionalProperties") is True:
        del node["additionalProperties"]
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            result[key] = {name: structural(child, definitions) for name, child in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            result[key] = structural(value, definitions)
        else:
            result[key] = value
    unsupported = {"$ref", "anyOf", "oneOf", "allOf", "not", "$defs"} & result.keys()
    if unsupported:
        raise ValueError(f"not structural: {sorted(unsupported)} left in {result}")
    return _ordered(result)


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    first = {key: node[key] for key in _ORDER if key in node}
    return {**first, **{key: value for key, value in node.items() if key not in first}}


def definition() -> dict[str, Any]:
    """The whole CustomResourceDefinition, as a dict ready to dump or send."""
    columns = [
        {"name": name, "type": kind, "jsonPath": path, **({"priority": priority} if priority else {})}
        for name, kind, path, priority in PRINTER_COLUMNS
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": group.CRD_NAME,
            "labels": {"app.kubernetes.io/name": "dynatrace-apitoken-operator"},
        },
        "spec": {
            "group": group.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": group.KIND,
                "listKind": group.LIST_KIND,
                "plural": group.PLURAL,
                "singular": group.SINGULAR,
                "shortNames": list(group.SHORT_NAMES),
                "categories": list(group.CATEGORIES),
            },
            "versions": [
                {
                    "name": group.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": structural(ApiToken.model_json_schema(by_alias=True))},
                }
            ],
        },
    }


def render() -> str:
    """The CRD file's text: the header, then the definition as YAML (stable: same models, same bytes)."""
    import yaml  # only the writer needs it: the rest of api/ is pydantic and the standard library

    body = yaml.safe_dump(definition(), sort_keys=False, width=110, allow_unicode=True)
    return HEADER + body
