"""The YAML in the docs is real: every ```yaml block of README.md and docs/*.md parses, and every manifest in
them whose kind the local API server serves is accepted by it (server-side dry run, strict field
validation). `kubectl explain apitoken.spec` has a description for every field, read from the API server's
OpenAPI v3 document for the CRD's group version (what `kubectl explain` itself reads).

Skipped, and listed exactly in `SKIPPED` (a skip is not a pass: a new manifest of a kind the API server does
not know fails the test until it is added there, with a reason):

- Flux (`source.toolkit.fluxcd.io`, `kustomize.toolkit.fluxcd.io`, `helm.toolkit.fluxcd.io`) and Argo CD
  (`argoproj.io`) kinds: their CRDs are not installed in the local control plane (the tests do not carry
  them; the GitOps tools' health code is tested in tests/gitops/ instead). Their field names were checked
  against the Flux and Argo CD API references when written.
- `kustomize.config.k8s.io` Kustomization: a kustomization.yaml file for the kustomize tool, not an API
  object at all (deploy/'s own is rendered and applied by tests/manifests/test_kustomize.py).

Fragments that are not whole manifests (no `apiVersion` and `kind`: a container's `securityContext`, a
`livenessProbe`) are only parsed.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from apitoken_operator.api import group
from tests.manifests.test_kustomize import kubectl

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^( *)```yaml[ \t]*\n(.*?)^\1```[ \t]*$", flags=re.M | re.S)

FLUX_CRDS = "Flux's CRDs are not installed in the local control plane"
ARGO_CRDS = "Argo CD's CRDs are not installed in the local control plane"
KUSTOMIZE_FILE = "a kustomization.yaml for the kustomize tool, not an API object"
#: (file, apiVersion, kind, metadata.name) -> why the API server is not asked
SKIPPED: dict[tuple[str, str, str, str | None], str] = {
    ("docs/gitops.md", "argoproj.io/v1alpha1", "Application", "monitoring-apitokens"): ARGO_CRDS,
    ("docs/gitops.md", "kustomize.toolkit.fluxcd.io/v1", "Kustomization", "monitoring-apitokens"): FLUX_CRDS,
    ("docs/image.md", "kustomize.config.k8s.io/v1beta1", "Kustomization", None): KUSTOMIZE_FILE,
    ("docs/install.md", "kustomize.config.k8s.io/v1beta1", "Kustomization", None): KUSTOMIZE_FILE,
    ("docs/kustomize.md", "kustomize.config.k8s.io/v1beta1", "Kustomization", None): KUSTOMIZE_FILE,
    ("docs/install.md", "argoproj.io/v1alpha1", "Application", "dynatrace-apitoken-operator"): ARGO_CRDS,
    (
        "docs/install.md",
        "source.toolkit.fluxcd.io/v1",
        "GitRepository",
        "dynatrace-apitoken-operator",
    ): FLUX_CRDS,
    ("docs/install.md", "kustomize.toolkit.fluxcd.io/v1", "Kustomization", "apitoken-operator"): FLUX_CRDS,
    ("docs/install.md", "helm.toolkit.fluxcd.io/v2", "HelmRelease", "apitoken-operator"): FLUX_CRDS,
    ("docs/install.md", "kustomize.toolkit.fluxcd.io/v1", "Kustomization", "monitoring-apitokens"): FLUX_CRDS,
}
#: the manifests the API server must accept; listed so that losing one (a block no longer found, a
#: language tag changed) fails too
CHECKED = {
    ("docs/export.md", "dynatrace.apitokens.io/v1alpha1", "ApiToken", "ci-reader-up5gry75"),
    ("docs/gitops.md", "v1", "ConfigMap", "argocd-cm"),
}


@dataclass(frozen=True)
class Block:
    path: pathlib.Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def yaml_blocks() -> Iterator[Block]:
    """Every ```yaml block, also those indented under a list item (dedented by the fence's indent)."""
    for path in DOCS:
        text = path.read_text()
        for found in FENCE.finditer(text):
            indent, body = found.group(1), found.group(2)
            dedented = "".join(line.removeprefix(indent) for line in body.splitlines(keepends=True))
            yield Block(path, text.count("\n", 0, found.start()) + 1, dedented)


def manifests() -> Iterator[tuple[Block, dict[str, Any]]]:
    for block in yaml_blocks():
        for document in yaml.safe_load_all(block.text):
            if isinstance(document, dict) and "apiVersion" in document and "kind" in document:
                yield block, document


def key(block: Block, document: dict[str, Any]) -> tuple[str, str, str, str | None]:
    name = (document.get("metadata") or {}).get("name")
    return (str(block.path.relative_to(ROOT)), document["apiVersion"], document["kind"], name)


BLOCKS = list(yaml_blocks())


def test_the_blocks_are_found() -> None:
    """The fence pattern finds the blocks (an indented one too), so the tests below see them all."""
    assert len(BLOCKS) >= 12
    assert sum(block.text.count("```") for block in BLOCKS) == 0
    for path in DOCS:
        opened = len(re.findall(r"^ *```yaml[ \t]*$", path.read_text(), flags=re.M))
        assert opened == len([b for b in BLOCKS if b.path == path]), f"{path.name}: a ```yaml block not read"


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_every_yaml_block_parses(block: Block) -> None:
    documents = [d for d in yaml.safe_load_all(block.text) if d is not None]
    assert documents, f"{block.where}: an empty block"
    for document in documents:
        assert isinstance(document, dict), f"{block.where}: not a mapping: {document!r}"


@pytest.mark.controlplane
def test_every_manifest_the_api_server_knows_is_accepted(
    cluster: Any, k8s: kubernetes.client.ApiClient, namespace: str
) -> None:
    discovery = DynamicClient(k8s)
    skipped: dict[tuple[str, str, str, str | None], str] = {}
    accepted = set()
    for block, document in manifests():
        where = key(block, document)
        try:
            resource = discovery.resources.get(api_version=document["apiVersion"], kind=document["kind"])
        except ResourceNotFoundError:
            skipped[where] = SKIPPED.get(where, f"{block.where}: not served by the API server")
            continue
        body = json.loads(json.dumps(document))
        if resource.namespaced:  # the doc's own namespace need not exist here: the test's stands in
            body.setdefault("metadata", {})["namespace"] = namespace
        result = kubectl(
            "apply",
            "--server-side",
            "--dry-run=server",
            "--validate=strict",
            "--field-manager=docs-check",
            "-f",
            "-",
            kubeconfig=cluster.kubeconfig,
            stdin=yaml.safe_dump(body),
        )
        assert result.returncode == 0, f"{block.where}: {document['kind']} refused:\n{result.stderr}"
        assert "(server dry run)" in result.stdout, result.stdout
        accepted.add(where)
    assert skipped == SKIPPED, "skipped manifests changed: add them to SKIPPED with a reason, or remove them"
    assert accepted == CHECKED


def _openapi_v3(k8s: kubernetes.client.ApiClient, path: str) -> dict[str, Any]:
    """GET a path of the API server with the client's own credentials, as JSON."""
    request = k8s.param_serialize(
        method="GET",
        resource_path=path,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = k8s.call_api(*request)
    response.read()
    assert response.status == 200, (path, response.status)
    document: dict[str, Any] = json.loads(response.data)
    return document


def undocumented(schema: dict[str, Any], path: str) -> Iterator[str]:
    """The fields under `schema` without a description, as `kubectl explain` paths. Map values
    (`additionalProperties`, e.g. spec.secret.labels' values) are not fields and need none."""
    for name, child in (schema.get("properties") or {}).items():
        here = f"{path}.{name}"
        if not (child.get("description") or "").strip():
            yield here
        yield from undocumented(child, here)
    items = schema.get("items")
    if isinstance(items, dict):
        yield from undocumented(items, path)


def fields(schema: dict[str, Any], path: str) -> Iterator[str]:
    for name, child in (schema.get("properties") or {}).items():
        yield f"{path}.{name}"
        yield from fields(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from fields(schema["items"], path)


@pytest.mark.controlplane
def test_kubectl_explain_describes_every_spec_field(k8s: kubernetes.client.ApiClient) -> None:
    paths = _openapi_v3(k8s, "/openapi/v3")["paths"]
    document = _openapi_v3(k8s, paths[f"apis/{group.GROUP}/{group.VERSION}"]["serverRelativeURL"])
    schemas = document["components"]["schemas"]
    (name,) = [n for n in schemas if n.endswith(f".{group.VERSION}.{group.KIND}")]
    schema = schemas[name]
    spec = schema["properties"]["spec"]
    assert (spec.get("description") or "").strip(), "apitoken.spec itself has no description"
    seen = set(fields(spec, "apitoken.spec"))
    # the walk reaches nested fields and list items, so an empty walk cannot pass
    assert {"apitoken.spec.name", "apitoken.spec.secret.key", "apitoken.spec.rotation.gracePeriod"} <= seen
    assert list(undocumented(spec, "apitoken.spec")) == []
    assert list(undocumented(schema["properties"]["status"], "apitoken.status")) == []
