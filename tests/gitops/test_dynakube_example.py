"""deploy/examples/dynakube/ applied as Flux and as Argo CD apply it, on the real control plane: both
ApiTokens Ready as kstatus (Flux) and the shipped Argo CD health check judge them, and the DynaKube's
Secret holds both keys, each a live token by lookup — what the Dynatrace Operator reads."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.fixtures.cluster import wait_until
from tests.fixtures.gitops import ArgoHealth, KStatus
from tests.fixtures.operator import OperatorEnv

pytestmark = pytest.mark.controlplane

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "examples" / "dynakube"
KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"
NAMES = ("dynakube-operator-token", "dynakube-data-ingest-token")


def kubectl(env: OperatorEnv, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(KUBECTL), *args],
        check=False,
        input=stdin,
        env={**os.environ, "KUBECONFIG": str(env.cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def built(env: OperatorEnv, **labels: str) -> str:
    """The kustomization as a GitOps tool builds it, moved into the test's namespace."""
    documents = [d for d in yaml.safe_load_all(kubectl(env, "kustomize", str(EXAMPLE))) if d]
    assert {d["metadata"]["name"] for d in documents} == set(NAMES)
    for document in documents:
        assert document["metadata"]["namespace"] == "dynatrace"
        document["metadata"]["namespace"] = env.namespace
        document["metadata"].setdefault("labels", {}).update(labels)
    return yaml.safe_dump_all(documents)


def healthy_and_filled(env: OperatorEnv, kstatus: KStatus, argo_health: ArgoHealth) -> None:
    bodies: dict[str, dict[str, Any]] = {name: env.wait_ready(name, timeout=60) for name in NAMES}
    for body in bodies.values():
        assert kstatus(body) == ("Current", "Resource is Ready")
        assert argo_health(body)[0] == "Healthy"
    expected = {
        "apiToken": bodies["dynakube-operator-token"]["status"]["id"],
        "dataIngestToken": bodies["dynakube-data-ingest-token"]["status"]["id"],
    }

    def filled() -> bool:
        data = env.secret_data("dynakube") or {}
        if set(data) != set(expected):
            return False
        return all((env.lookup(data[key]) or {}).get("id") == token_id for key, token_id in expected.items())

    wait_until(filled, what="the DynaKube Secret holding both keys, each a live token")


def tear_down(env: OperatorEnv) -> None:
    for name in NAMES:
        env.delete(name)
    for name in NAMES:
        env.wait_gone(name, timeout=60)
    wait_until(lambda: env.secret_data("dynakube") is None, timeout=60, what="the DynaKube Secret collected")
    assert env.live_tokens() == [], "a token outlived its ApiToken"


def test_the_dynakube_example_applied_as_flux_and_as_argo_cd_apply_it(
    operator_env: OperatorEnv, kstatus: KStatus, argo_health: ArgoHealth
) -> None:
    env = operator_env
    env.start()
    # Flux's kustomize-controller: server-side apply under its own field manager
    kubectl(
        env,
        "apply",
        "--server-side",
        "--field-manager=kustomize-controller",
        "-f",
        "-",
        stdin=built(env, **{"kustomize.toolkit.fluxcd.io/name": "dynakube"}),
    )
    healthy_and_filled(env, kstatus, argo_health)
    tear_down(env)
    # Argo CD: a client-side apply, tracked by its instance label
    kubectl(env, "apply", "-f", "-", stdin=built(env, **{"app.kubernetes.io/instance": "dynakube"}))
    healthy_and_filled(env, kstatus, argo_health)
    tear_down(env)
