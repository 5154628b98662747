"""docs/gitops.md ships the Argo CD health check verbatim, and its manifests are valid YAML."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.fixtures.gitops import HEALTH_SCRIPT, ROOT

DOC = ROOT / "docs" / "gitops.md"
KEY = "resource.customizations.health.dynatrace.apitokens.io_ApiToken"


def yaml_blocks() -> list[dict[str, Any]]:
    text = DOC.read_text()
    blocks = re.findall(r"^( *)```yaml\n(.*?)^\1```", text, flags=re.M | re.S)
    assert blocks, "no yaml blocks in docs/gitops.md"
    documents: list[dict[str, Any]] = []
    for indent, body in blocks:
        dedented = "".join(line.removeprefix(indent) for line in body.splitlines(keepends=True))
        documents.extend(d for d in yaml.safe_load_all(dedented) if d)
    return documents


def test_the_argocd_cm_in_the_doc_carries_the_shipped_script_verbatim() -> None:
    config_maps = [d for d in yaml_blocks() if d.get("kind") == "ConfigMap"]
    assert [c["metadata"]["name"] for c in config_maps] == ["argocd-cm"]
    assert config_maps[0]["data"][KEY] == HEALTH_SCRIPT.read_text()


def test_the_doc_shows_an_argo_cd_application_and_flux_objects() -> None:
    kinds = {(d["apiVersion"].split("/")[0], d["kind"]) for d in yaml_blocks()}
    assert ("argoproj.io", "Application") in kinds
    assert ("kustomize.toolkit.fluxcd.io", "Kustomization") in kinds
    text = DOC.read_text()
    assert "wait: true" in text and "healthChecks" in text and "HelmRelease" in text
