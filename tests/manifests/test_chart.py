"""The Helm chart: lint, render with default and non-default values, schema, and the API server's verdict.

`helm` is the pinned binary (apitoken_devenv.binaries.ensure_helm) with its own HELM_* homes.
Rendering needs no cluster; the server-side dry runs (`kubectl apply --dry-run=server`) use the session's
control plane, in a namespace that enforces the restricted Pod Security Standard, so the API server's own
PodSecurity admission judges the pod spec too. The ServiceMonitor and the kopf peering objects are checked
by rendering only (their CRDs are not installed; the peering ones are installed for real in test_rbac.py).

`Helm` and `CHART` are imported by tests/operator/test_rbac.py.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest
import yaml

from apitoken_devenv import binaries
from apitoken_operator.reconcile.attention import FINALIZER
from tests.fixtures.cluster import Cluster

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "dynatrace-apitoken-operator"
SOURCE_CRD = ROOT / "crds" / "apitokens.dynatrace.apitokens.io.yaml"
KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"
#: kinds whose CRDs the test cluster does not have: rendered and inspected, never sent to the API server
NOT_INSTALLED = {"ServiceMonitor", "KopfPeering", "ClusterKopfPeering"}


@dataclass
class Helm:
    binary: pathlib.Path
    home: pathlib.Path
    kubeconfig: pathlib.Path | None = None

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args],
            check=False,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def values_file(self, values: dict[str, Any]) -> pathlib.Path:
        text = yaml.safe_dump(values)
        path = self.home / f"values-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def template(
        self, values: dict[str, Any] | None = None, *, release: str = "r", namespace: str = "op"
    ) -> list[dict[str, Any]]:
        output = self.run(*self.template_args(values, release=release, namespace=namespace)).stdout
        return [d for d in yaml.safe_load_all(output) if d]

    def template_args(self, values: dict[str, Any] | None, *, release: str, namespace: str) -> list[str]:
        args = ["template", release, str(CHART), "--namespace", namespace]
        if values:
            args += ["--values", str(self.values_file(values))]
        return args

    def install(
        self, release: str, namespace: str, values: dict[str, Any] | None = None, *, upgrade: bool = False
    ) -> str:
        verb = ["upgrade", "--install"] if upgrade else ["install"]
        args = [*verb, release, str(CHART), "--namespace", namespace]
        if values:
            args += ["--values", str(self.values_file(values))]
        return self.run(*args).stdout

    def uninstall(self, release: str, namespace: str) -> None:
        self.run("uninstall", release, "--namespace", namespace, "--wait", check=False)


@pytest.fixture(scope="session")
def helm_binary() -> pathlib.Path:
    return binaries.ensure_helm()


@pytest.fixture
def helm(helm_binary: pathlib.Path, tmp_path: pathlib.Path) -> Helm:
    """Helm with private homes; no cluster (rendering, linting)."""
    return Helm(binary=helm_binary, home=tmp_path / "helm")


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata'] for o in found]}"
    return found[0]


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


# --- the CRD is the one in crds/ ------------------------------------------------------------------------


def test_the_chart_copy_of_the_crd_is_identical_to_crds_and_the_sync_script_agrees() -> None:
    """The generated CRD itself is checked in test_crd.py; here: the chart renders what crds/ holds."""
    copy = CHART / "files" / "crds" / SOURCE_CRD.name
    assert copy.read_bytes() == SOURCE_CRD.read_bytes(), "run: python scripts/sync_crd.py"
    assert sorted(p.name for p in (CHART / "files" / "crds").glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "crds").glob("*.yaml")
    )
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sync_crd.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


def test_the_sync_script_notices_and_repairs_a_stale_copy(tmp_path: pathlib.Path) -> None:
    """Run on a scratch copy of the tree's relevant parts, so the real copies are never touched."""
    scratch = tmp_path / "tree"
    for part in (
        "crds",
        "scripts/sync_crd.py",
        "charts/dynatrace-apitoken-operator/files/crds",
        "deploy/crds",
    ):
        source, target = ROOT / part, scratch / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            target.mkdir()
            for file in source.glob("*.yaml"):
                (target / file.name).write_bytes(file.read_bytes())
        else:
            target.write_bytes(source.read_bytes())
    stale = scratch / "deploy" / "crds" / SOURCE_CRD.name
    stale.write_text(stale.read_text().replace("minItems: 1", "minItems: 2"))
    edited = scratch / "crds" / SOURCE_CRD.name  # crds/ is generated too: a hand edit is stale
    edited.write_text(edited.read_text().replace("maxItems: 200", "maxItems: 300"))
    stray = scratch / "charts" / "dynatrace-apitoken-operator" / "files" / "crds" / "old.yaml"
    stray.write_text("kind: CustomResourceDefinition\n")
    script = [sys.executable, str(scratch / "scripts" / "sync_crd.py")]
    check = subprocess.run([*script, "--check"], check=False, capture_output=True, text=True)
    assert check.returncode == 1
    assert [line.split()[1] for line in check.stderr.splitlines()] == [
        f"crds/{SOURCE_CRD.name}",
        f"deploy/crds/{SOURCE_CRD.name}",
        "charts/dynatrace-apitoken-operator/files/crds/old.yaml",
    ]
    subprocess.run(script, check=True, capture_output=True)
    assert stale.read_bytes() == edited.read_bytes() == SOURCE_CRD.read_bytes()
    assert not stray.exists()
    assert subprocess.run([*script, "--check"], check=False, capture_output=True).returncode == 0


def test_the_rendered_crd_is_the_source_crd_with_chart_labels_and_keep(helm: Helm) -> None:
    rendered = find(helm.template(), "CustomResourceDefinition", "apitokens.dynatrace.apitokens.io")
    source = yaml.safe_load(SOURCE_CRD.read_text())
    assert rendered["spec"] == source["spec"]
    assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert source["metadata"]["labels"].items() <= rendered["metadata"]["labels"].items()
    assert rendered["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    not_kept = find(helm.template({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert "annotations" not in not_kept["metadata"]
    argo = {"argocd.argoproj.io/sync-options": "Prune=false,Delete=false"}
    annotated = find(helm.template({"crds": {"annotations": argo}}), "CustomResourceDefinition")
    assert annotated["metadata"]["annotations"] == {**argo, "helm.sh/resource-policy": "keep"}
    assert "CustomResourceDefinition" not in kinds(helm.template({"crds": {"enabled": False}}))


# --- lint, schema, validation -----------------------------------------------------------------------------

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced-rbac": {
        "rbac": {"scope": "namespaces"},
        "watchNamespaces": ["team-a", "team-b"],
        "defaultConnection": {"existingSecret": "dynatrace-connection"},
    },
    "metrics-servicemonitor": {
        "metrics": {
            "serviceMonitor": {
                "enabled": True,
                "labels": {"release": "prometheus"},
                "interval": "30s",
                "metricRelabelings": [{"action": "drop", "regex": "python_.*", "sourceLabels": ["__name__"]}],
            }
        }
    },
    "peering": {"peering": {"enabled": True}, "replicaCount": 2, "strategy": {"type": "RollingUpdate"}},
    "multi-tenant": {
        "rbac": {"scope": "namespaces", "aggregateToDefaultRoles": True},
        "watchNamespaces": ["team-a", "team-b"],
        "defaultConnection": {"existingSecret": "dynatrace-connection"},
        "networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["172.20.0.10/32"]}},
        "policy": {"namespaces": ["team-a"], "allowEscalatingScopes": ["InstallerDownload"]},
        "connections": {"allowedCidrs": ["10.20.0.0/16"]},
    },
    "extras": {
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"}],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
        "podAnnotations": {"example.com/team": "platform"},
        "podLabels": {"team": "platform"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                            ]
                        }
                    ]
                }
            }
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "image": {"digest": "sha256:" + "a" * 64},
        "commonLabels": {"cost-center": "42"},
    },
    "added-in-0.2.0": {
        "peering": {"enabled": True},
        "replicaCount": 3,
        "podDisruptionBudget": {"maxUnavailable": "50%"},
        "revisionHistoryLimit": 0,
        "serviceAccount": {"automount": True},
        "global": {"imagePullSecrets": ["regcred", {"name": "mirror"}]},
        "imagePullSecrets": [{"name": "regcred"}],
        "extraObjects": [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "{{ .Release.Name }}-extra", "namespace": "{{ .Release.Namespace }}"},
                "data": {"chart": "{{ .Chart.Name }}"},
            }
        ],
    },
}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_is_clean(helm: Helm, name: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    if VALUE_SETS[name]:
        args += ["--values", str(helm.values_file(VALUE_SETS[name]))]
    result = helm.run(*args)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("kube_version", "accepted"),
    [
        ("1.28.15", False),
        ("v1.28.3-gke.1286000", False),
        ("1.29.0", True),
        ("v1.30.2-eks-1552ad0", True),  # a provider's suffix reads as a pre-release: `-0` admits it
        ("1.37.2", True),
    ],
)
def test_the_chart_refuses_kubernetes_before_1_29(helm: Helm, kube_version: str, accepted: bool) -> None:
    """Chart.yaml's kubeVersion: CEL validation rules (x-kubernetes-validations) are GA from 1.29.

    `helm install` checks the server's version; `helm template` checks `--kube-version` (default: helm's own
    client-go release, v1.37 for the pinned helm, which the other tests here render with)."""
    result = helm.run("template", "r", str(CHART), "--kube-version", kube_version, check=False)
    if accepted:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert "chart requires kubeVersion: >=1.29.0-0" in result.stderr, result.stderr


def test_helm_renders_offline_for_a_kubernetes_the_chart_admits(helm: Helm) -> None:
    """The offline renders above use helm's default Kubernetes version, which must satisfy kubeVersion."""
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"] == ">=1.29.0-0"
    shown = helm.run("version", "--template", "{{ .KubeClientVersion }}").stdout.strip()
    major, minor = (int(part) for part in shown.removeprefix("v").split(".")[:2])
    assert (major, minor) >= (1, 29), shown


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("imagee.tag=1.0", "imagee"),  # a typo at the top level
        ("image.tagg=1.0", "tagg"),  # ... and inside a group
        ("rbac.scoop=cluster", "scoop"),
        ("metrics.serviceMonitor.enable=true", "enable"),
        ("rbac.scope=everywhere", "scope"),
        ("logFormat=yaml", "logFormat"),
        ("events=none", "events"),
        ("podDisruptionBudget.enable=true", "enable"),
        ("podDisruptionBudget.minAvailable=half", "minAvailable"),
        ("serviceAccount.automount=yes", "automount"),
        ("revisionHistoryLimit=-1", "revisionHistoryLimit"),
        ("admissionFinalizer.enabled=sometimes", "enabled"),
        ("admissionFinalizer.enable=true", "enable"),
    ],
)
def test_the_values_schema_rejects_typos_and_wrong_values(helm: Helm, setting: str, complaint: str) -> None:
    result = helm.run("template", "r", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0
    assert "schema" in result.stderr and complaint in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": 2}, "replicaCount > 1 needs peering.enabled"),
        ({"rbac": {"scope": "namespaces"}}, "rbac.scope=namespaces needs watchNamespaces"),
        ({"rbac": {"scope": "namespaces"}, "watchNamespaces": ["team-*"]}, "needs exact names"),
        ({"peering": {"enabled": True}, "watchNamespaces": ["team-*"]}, "needs exact names"),
        ({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}}, "needs metrics.enabled"),
        ({"admissionFinalizer": {"enabled": True}, "watchNamespaces": ["team-*"]}, "needs exact names"),
    ],
)
def test_contradictory_values_fail_with_a_message(helm: Helm, values: dict[str, Any], complaint: str) -> None:
    result = helm.run(
        *helm.template_args(values, release="r", namespace="op"),
        check=False,
    )
    assert result.returncode != 0 and complaint in result.stderr, result.stderr


# --- what the values render to ------------------------------------------------------------------------------


def test_defaults_render_one_recreated_replica_watching_all_namespaces(helm: Helm) -> None:
    objects = helm.template()
    assert kinds(objects) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    main = container(objects)
    assert main["image"] == "ghcr.io/dynatrace-apitoken-operator/dynatrace-apitoken-operator:0.1.0"
    assert main["command"] == ["apitoken-operator"]
    assert main["args"] == [
        "run",
        "--all-namespaces",
        "--standalone",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-port=9090",
        "--drift-interval=300",
        "--observation-max-age=60",
        "--events=all",
        "--log-format=json",
    ]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {"healthz": 8080, "metrics": 9090}
    service = find(objects, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    binding = find(objects, "ClusterRoleBinding")
    account = find(objects, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "op"}
    ]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_every_run_flag_value_is_mapped(helm: Helm) -> None:
    objects = helm.template(
        {
            "watchNamespaces": ["team-a", "team-*"],
            "defaultConnection": {"existingSecret": "shared-dynatrace", "namespace": "dynatrace-system"},
            "policy": {
                "namespaces": ["team-*"],
                "allowedScopes": ["metrics.*", "logs.ingest"],
                "deniedScopes": ["logs.*"],
                "allowEscalatingScopes": ["InstallerDownload"],
                "allowPersonalAccessTokens": True,
            },
            "connections": {"allowInsecureHttp": True, "allowedCidrs": ["10.20.0.0/16", "fd00::/8"]},
            "driftInterval": 120,
            "observationMaxAge": 30.5,
            "events": "warnings",
            "logFormat": "text",
            "verbose": True,
            "metrics": {"enabled": False},
            "liveness": {"port": 8181},
            "extraArgs": ["--observation-max-age=45"],
        }
    )
    assert container(objects)["args"] == [
        "run",
        "--namespace=team-a",
        "--namespace=team-*",
        "--standalone",
        "--liveness=http://0.0.0.0:8181/healthz",
        "--default-connection=dynatrace-system/shared-dynatrace",
        "--policy-namespace=team-*",
        "--policy-allowed-scope=metrics.*",
        "--policy-allowed-scope=logs.ingest",
        "--policy-denied-scope=logs.*",
        "--policy-allow-escalating-scope=InstallerDownload",
        "--policy-allow-personal-access-tokens",
        "--allow-insecure-http",
        "--allow-connection-cidr=10.20.0.0/16",
        "--allow-connection-cidr=fd00::/8",
        "--drift-interval=120",
        "--observation-max-age=30.5",
        "--events=warnings",
        "--log-format=text",
        "--verbose",
        "--observation-max-age=45",
    ]
    assert "Service" not in kinds(objects)
    # The default connection's namespace defaults to the release's.
    args = container(helm.template({"defaultConnection": {"existingSecret": "c"}}, namespace="ops"))["args"]
    assert "--default-connection=ops/c" in args


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_rendered_arguments_are_accepted_by_the_operator_cli(helm: Helm, name: str) -> None:
    from apitoken_operator import cli
    from apitoken_operator.runner import settings_from

    values = {**VALUE_SETS[name], "defaultConnection": {"existingSecret": "c"}}
    main = container(helm.template(values))
    argv = main["args"]
    assert main["command"] == ["apitoken-operator"]
    args = cli.build_parser(argv).parse_args(argv)
    assert args.verb == "run"
    settings = settings_from(args)
    assert settings.default_connection == "op/c"
    assert args.liveness == "http://0.0.0.0:8080/healthz"
    assert args.metrics_port == 9090
    assert (args.peering is not None) == bool(VALUE_SETS[name].get("peering"))


def test_namespaced_rbac_renders_a_role_per_watched_namespace_and_no_cluster_wide_secrets(helm: Helm) -> None:
    objects = helm.template(VALUE_SETS["namespaced-rbac"])
    roles = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "Role"}
    assert set(roles) == {"team-a", "team-b", "op"}
    for namespace in ("team-a", "team-b"):
        rules = roles[namespace]["rules"]
        assert {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        } in rules
        binding = find([o for o in objects if o["metadata"].get("namespace") == namespace], "RoleBinding")
        assert binding["subjects"][0]["namespace"] == "op"
    # The default connection lives in the release namespace, outside the watched ones: that one Secret only.
    assert roles["op"]["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["dynatrace-connection"],
            "verbs": ["get"],
        }
    ]
    # Cluster-wide: only what kopf must read (CRDs, namespace names), nothing about Secrets.
    cluster_role = find(objects, "ClusterRole")
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    ]
    assert container(objects)["args"][1:3] == ["--namespace=team-a", "--namespace=team-b"]
    # A default connection inside a watched namespace needs no extra Role.
    inside = helm.template(
        {**VALUE_SETS["namespaced-rbac"], "defaultConnection": {"existingSecret": "c", "namespace": "team-a"}}
    )
    assert {o["metadata"]["namespace"] for o in inside if o["kind"] == "Role"} == {"team-a", "team-b"}


def test_metrics_service_and_service_monitor_select_the_operator(helm: Helm) -> None:
    objects = helm.template(VALUE_SETS["metrics-servicemonitor"])
    monitor = find(objects, "ServiceMonitor")
    service = find(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["op"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics" and endpoint["interval"] == "30s"
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    assert "ServiceMonitor" not in kinds(helm.template())


def test_peering_runs_with_peering_crds_and_a_peering_object(helm: Helm) -> None:
    objects = helm.template(VALUE_SETS["peering"])
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    main = container(objects)
    assert "--peering=r-dynatrace-apitoken-operator" in main["args"] and "--standalone" not in main["args"]
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in main["env"]
    crds = {o["metadata"]["name"]: o for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert set(crds) == {
        "apitokens.dynatrace.apitokens.io",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }
    assert crds["kopfpeerings.kopf.dev"]["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    peering = find(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "r-dynatrace-apitoken-operator"
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    rules = find(objects, "ClusterRole")["rules"]
    assert {
        "apiGroups": ["kopf.dev"],
        "resources": ["clusterkopfpeerings"],
        "verbs": ["list", "watch", "patch"],
    } in rules
    # Watching given namespaces: a KopfPeering in each, and the namespaced peering resource in RBAC.
    namespaced = helm.template(
        {"peering": {"enabled": True, "name": "tokens"}, "watchNamespaces": ["a", "b"]}
    )
    assert sorted(
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in namespaced if o["kind"] == "KopfPeering"
    ) == [("a", "tokens"), ("b", "tokens")]
    assert {
        "apiGroups": ["kopf.dev"],
        "resources": ["kopfpeerings"],
        "verbs": ["list", "watch", "patch"],
    } in find(namespaced, "ClusterRole")["rules"]
    # The kopf.dev CRDs stay out when another kopf operator brought them, or when CRDs are managed elsewhere.
    brought = helm.template({"peering": {"enabled": True, "installCRDs": False}})
    assert [o["metadata"]["name"] for o in brought if o["kind"] == "CustomResourceDefinition"] == [
        "apitokens.dynatrace.apitokens.io"
    ]
    elsewhere = helm.template({"peering": {"enabled": True}, "crds": {"enabled": False}})
    assert "CustomResourceDefinition" not in kinds(elsewhere)


def test_extra_env_volumes_and_pod_placement_are_passed_through(helm: Helm) -> None:
    values = VALUE_SETS["extras"]
    objects = helm.template(values)
    pod = find(objects, "Deployment")["spec"]["template"]
    main = container(objects)
    assert main["image"].endswith("@sha256:" + "a" * 64)
    assert main["env"] == values["extraEnv"]
    assert main["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}, *values["extraVolumeMounts"]]
    assert pod["spec"]["volumes"] == [
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        *values["extraVolumes"],
    ]
    assert pod["metadata"]["annotations"] == values["podAnnotations"]
    assert pod["metadata"]["labels"]["team"] == "platform"
    for key in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        assert pod["spec"][key] == values[key]
    assert all(o["metadata"]["labels"]["cost-center"] == "42" for o in objects)


def test_rbac_and_the_service_account_can_be_brought_by_the_user(helm: Helm) -> None:
    objects = helm.template(
        {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops-sa"}}
    )
    assert kinds(objects) == ["CustomResourceDefinition", "Deployment", "Service"]
    assert find(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-sa"
    result = helm.run(
        *helm.template_args({"serviceAccount": {"create": False}}, release="r", namespace="op"), check=False
    )
    assert result.returncode != 0 and "serviceAccount.name is required" in result.stderr


def test_the_pod_meets_the_restricted_pod_security_standard(helm: Helm) -> None:
    for values in VALUE_SETS.values():
        pod = find(helm.template(values), "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        for each in pod["containers"]:
            context = each["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert context.get("privileged", False) is False
        assert all("hostPath" not in volume for volume in pod["volumes"])


def test_notes_tell_how_to_check_and_explain_several_replicas(helm: Helm) -> None:
    notes = helm.run("install", "r", str(CHART), "--dry-run=client", "-n", "op").stdout
    assert "kubectl -n op rollout status deployment/r-dynatrace-apitoken-operator" in notes
    assert "No default connection is configured" in notes and "WARNING" not in notes
    values = helm.values_file({**VALUE_SETS["peering"], "defaultConnection": {"existingSecret": "conn"}})
    notes = helm.run("install", "r", str(CHART), "--dry-run=client", "-n", "op", "-f", str(values)).stdout
    assert "kubectl -n op create secret generic conn" in notes
    assert "replicaCount is 2. With peering, one replica" in notes


# --- the API server's verdict ----------------------------------------------------------------------------


@pytest.fixture
def restricted_namespace(k8s: kubernetes.client.ApiClient, namespace: str) -> str:
    """The test's namespace, enforcing (and warning about) the restricted Pod Security Standard."""
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}
    kubernetes.client.CoreV1Api(k8s).patch_namespace(namespace, {"metadata": {"labels": labels}})
    return namespace


def server_dry_run(cluster: Cluster, objects: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    manifest = yaml.safe_dump_all(objects)
    return subprocess.run(
        [str(KUBECTL), "apply", "--dry-run=server", "-f", "-"],
        check=False,
        input=manifest,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.controlplane
@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_rendered_object_is_accepted_by_the_api_server(
    helm: Helm, cluster: Cluster, restricted_namespace: str, name: str
) -> None:
    """Everything but the CRDs (the test after this one) and the kinds the cluster has no CRD for."""
    values = dict(VALUE_SETS[name])
    if name in ("namespaced-rbac", "multi-tenant"):  # Roles go into namespaces that exist
        values["watchNamespaces"] = [restricted_namespace, "default"]
    objects = helm.template(values, release=restricted_namespace, namespace=restricted_namespace)
    sent = [o for o in objects if o["kind"] not in {*NOT_INSTALLED, "CustomResourceDefinition"}]
    result = server_dry_run(cluster, sent)
    assert result.returncode == 0, result.stderr
    assert "PodSecurity" not in result.stderr, result.stderr
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(sent)


@pytest.mark.controlplane
def test_the_crds_are_accepted_by_the_api_server_with_strict_field_validation(
    helm: Helm, cluster: Cluster, namespace: str
) -> None:
    """`kubectl apply` (and Helm) send CRDs with strict field validation: an unknown field is an error."""
    objects = helm.template({"peering": {"enabled": True}}, release=namespace, namespace=namespace)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) == 3
    result = server_dry_run(cluster, crds)
    assert result.returncode == 0, result.stderr[-600:]


@pytest.mark.controlplane
def test_the_api_server_would_warn_about_a_pod_that_breaks_the_restricted_standard(
    helm: Helm, cluster: Cluster, restricted_namespace: str
) -> None:
    """The check above is live: weakening the container's securityContext makes PodSecurity speak up."""
    objects = helm.template(
        {"securityContext": {"allowPrivilegeEscalation": True}},
        release=restricted_namespace,
        namespace=restricted_namespace,
    )
    result = server_dry_run(cluster, [find(objects, "Deployment")])
    assert 'would violate PodSecurity "restricted' in result.stderr, result.stderr


def test_aggregated_roles_let_edit_manage_and_view_read_apitokens_only_when_asked(helm: Helm) -> None:
    plain = [o for o in helm.template() if o["kind"] == "ClusterRole"]
    assert not any("aggregate" in label for role in plain for label in role["metadata"]["labels"])

    objects = helm.template({"rbac": {"aggregateToDefaultRoles": True}}, release="r")
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
    edit, view = roles["r-dynatrace-apitoken-operator-edit"], roles["r-dynatrace-apitoken-operator-view"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert [r["resources"] for r in edit["rules"]] == [["apitokens"]]  # never the status, never Secrets
    assert {"create", "update", "patch", "delete"} <= set(edit["rules"][0]["verbs"])
    assert all(set(r["verbs"]) == {"get", "list", "watch"} for r in view["rules"])
    for role in (edit, view):
        assert all(r["apiGroups"] == ["dynatrace.apitokens.io"] for r in role["rules"])
    # nothing binds them: Kubernetes folds them into edit/admin/view
    assert not any(
        b["roleRef"]["name"] in roles and b["roleRef"]["name"] != "r-dynatrace-apitoken-operator"
        for b in objects
        if b["kind"] in ("ClusterRoleBinding", "RoleBinding")
    )


def test_network_policy_limits_the_pod_to_dns_the_api_server_and_dynatrace(helm: Helm) -> None:
    assert "NetworkPolicy" not in kinds(helm.template())
    objects = helm.template(VALUE_SETS["multi-tenant"], namespace="op")
    policy = find(objects, "NetworkPolicy")
    deployment = find(objects, "Deployment")
    assert policy["metadata"]["namespace"] == "op"
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    dns, api_server, dynatrace = policy["spec"]["egress"]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert dns["to"] == [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert api_server["to"] == [{"ipBlock": {"cidr": "172.20.0.10/32"}}]
    assert {p["port"] for p in api_server["ports"]} == {443, 6443}
    assert dynatrace["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]
    assert dynatrace["ports"] == [{"port": 443, "protocol": "TCP"}]
    ingress_ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ingress_ports == [8080, 9090]

    scraper = [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    narrowed = find(
        helm.template(
            {
                "networkPolicy": {
                    "enabled": True,
                    "apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [6443]},
                    "dynatrace": {"cidrs": ["203.0.113.0/24"]},
                    "metricsFrom": scraper,
                }
            }
        ),
        "NetworkPolicy",
    )
    assert narrowed["spec"]["egress"][2]["to"] == [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    assert narrowed["spec"]["ingress"][1]["from"] == scraper

    result = helm.run(
        *helm.template_args({"networkPolicy": {"enabled": True}}, release="r", namespace="op"), check=False
    )
    assert result.returncode != 0 and "networkPolicy.apiServer.cidrs" in result.stderr


def test_connection_and_escalation_flags_are_off_by_default(helm: Helm) -> None:
    args = container(helm.template())["args"]
    assert not [a for a in args if a.startswith(("--allow-", "--policy-"))]


# --- values added in 0.2.0 ---------------------------------------------------------------------------------


def test_a_pod_disruption_budget_only_for_several_replicas(helm: Helm) -> None:
    assert "PodDisruptionBudget" not in kinds(helm.template())
    assert "PodDisruptionBudget" not in kinds(helm.template({"peering": {"enabled": True}}))
    objects = helm.template(VALUE_SETS["peering"])
    budget = find(objects, "PodDisruptionBudget")
    assert budget["metadata"]["namespace"] == "op"
    assert budget["spec"] == {
        "selector": find(objects, "Deployment")["spec"]["selector"],
        "minAvailable": 1,
    }
    half = find(
        helm.template({**VALUE_SETS["peering"], "podDisruptionBudget": {"maxUnavailable": "50%"}}),
        "PodDisruptionBudget",
    )
    assert "minAvailable" not in half["spec"] and half["spec"]["maxUnavailable"] == "50%"
    zero = find(
        helm.template({**VALUE_SETS["peering"], "podDisruptionBudget": {"maxUnavailable": 0}}),
        "PodDisruptionBudget",
    )
    assert zero["spec"]["maxUnavailable"] == 0 and "minAvailable" not in zero["spec"]
    off = helm.template({**VALUE_SETS["peering"], "podDisruptionBudget": {"enabled": False}})
    assert "PodDisruptionBudget" not in kinds(off)


def test_extra_objects_are_rendered_with_tpl(helm: Helm) -> None:
    as_text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-text\n"
    objects = helm.template(
        {
            **VALUE_SETS["added-in-0.2.0"],
            "extraObjects": [*VALUE_SETS["added-in-0.2.0"]["extraObjects"], as_text],
        },
        release="rel",
    )
    extra = find(objects, "ConfigMap", "rel-extra")
    assert extra["metadata"]["namespace"] == "op"
    assert extra["data"] == {"chart": "dynatrace-apitoken-operator"}
    assert find(objects, "ConfigMap", "rel-text")
    assert "ConfigMap" not in kinds(helm.template())


def test_service_account_automount_revision_history_and_pull_secrets(helm: Helm) -> None:
    objects = helm.template()
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["revisionHistoryLimit"] == 3
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert find(objects, "ServiceAccount")["automountServiceAccountToken"] is True
    assert "imagePullSecrets" not in deployment["spec"]["template"]["spec"]

    objects = helm.template({**VALUE_SETS["added-in-0.2.0"], "serviceAccount": {"automount": False}})
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["revisionHistoryLimit"] == 0
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert find(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    # global first, then the chart's own, each name once
    assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [
        {"name": "regcred"},
        {"name": "mirror"},
    ]
    only_global = helm.template({"global": {"imagePullSecrets": [{"name": "g"}]}})
    assert find(only_global, "Deployment")["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "g"}]


# --- the finalizer at admission (0.4.0) ----------------------------------------------------------------

SERVED = ("--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy")


def _policy_objects(helm: Helm, values: dict[str, Any] | None, *extra: str) -> list[dict[str, Any]]:
    output = helm.run(*helm.template_args(values, release="r", namespace="op"), *extra).stdout
    return [d for d in yaml.safe_load_all(output) if d and d["kind"].startswith("MutatingAdmissionPolicy")]


def test_the_admission_finalizer_is_installed_where_the_cluster_serves_it(helm: Helm) -> None:
    """auto: with the API served, a policy adding only the operator's finalizer on creation, failing open,
    bound to every namespace; without it (an older cluster), nothing."""
    assert _policy_objects(helm, None) == []
    policy, binding = _policy_objects(helm, None, *SERVED)
    assert (policy["kind"], binding["kind"]) == ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding")
    spec = policy["spec"]
    assert spec["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["dynatrace.apitokens.io"],
            "apiVersions": ["*"],
            "operations": ["CREATE"],
            "resources": ["apitokens"],
        }
    ]
    assert spec["failurePolicy"] == "Ignore"
    assert FINALIZER in spec["mutations"][0]["applyConfiguration"]["expression"]
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "matchResources": {"namespaceSelector": {}},
    }


def test_the_admission_finalizer_binds_only_the_watched_namespaces(helm: Helm) -> None:
    _, binding = _policy_objects(helm, {"watchNamespaces": ["team-a", "team-b"]}, *SERVED)
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}
        ]
    }
    # a glob cannot be selected: auto installs nothing rather than bind namespaces no operator watches
    assert _policy_objects(helm, {"watchNamespaces": ["team-*"]}, *SERVED) == []


@pytest.mark.parametrize(("enabled", "served", "installed"), [(False, True, False), (True, False, True)])
def test_the_admission_finalizer_can_be_forced_either_way(
    helm: Helm, enabled: bool, served: bool, installed: bool
) -> None:
    objects = _policy_objects(helm, {"admissionFinalizer": {"enabled": enabled}}, *(SERVED if served else ()))
    assert bool(objects) is installed
