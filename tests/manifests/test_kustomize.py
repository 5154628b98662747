"""deploy/: the kustomize base renders, applies to a real API server, and matches the chart; the examples are
accepted by the API server (server-side dry run)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client import ApiException

from apitoken_devenv import binaries
from apitoken_operator.dynatrace.secrets import TOKEN_PATTERN
from tests.fixtures.cluster import Cluster, wait_until
from tests.manifests.test_chart import Helm, find

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
EXAMPLES = DEPLOY / "examples"
SOURCE_CRD = ROOT / "crds" / "apitokens.dynatrace.apitokens.io.yaml"
KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"
NAMESPACE = "dynatrace-apitoken-operator"


def kubectl(
    *args: str, kubeconfig: pathlib.Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [str(KUBECTL), *args], check=False, input=stdin, env=env, capture_output=True, text=True, timeout=120
    )


def rendered() -> list[dict[str, Any]]:
    result = kubectl("kustomize", str(DEPLOY))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture
def helm(tmp_path: pathlib.Path) -> Helm:
    return Helm(binary=binaries.ensure_helm(), home=tmp_path / "helm")


def rule_set(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_deploy_copy_of_the_crd_is_identical_to_crds() -> None:
    assert sorted(p.name for p in (DEPLOY / "crds").glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "crds").glob("*.yaml")
    )
    copy = DEPLOY / "crds" / SOURCE_CRD.name
    assert copy.read_bytes() == SOURCE_CRD.read_bytes(), "run: python scripts/sync_crd.py"


def test_kustomize_renders_the_operator_in_its_namespace() -> None:
    objects = rendered()
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == [
        ("ClusterRole", NAMESPACE),
        ("ClusterRoleBinding", NAMESPACE),
        ("CustomResourceDefinition", "apitokens.dynatrace.apitokens.io"),
        ("Deployment", NAMESPACE),
        ("Namespace", NAMESPACE),
        ("Service", f"{NAMESPACE}-metrics"),
        ("ServiceAccount", NAMESPACE),
    ]
    for each in objects:
        if each["kind"] in ("Deployment", "Service", "ServiceAccount"):
            assert each["metadata"]["namespace"] == NAMESPACE
    crd = find(objects, "CustomResourceDefinition")
    assert crd["spec"] == yaml.safe_load(SOURCE_CRD.read_text())["spec"], (
        "kustomize renders the CRD differently from crds/: a value that does not survive its round trip "
        "(e.g. a key with no value, from an unquoted comma in a flow mapping)"
    )
    binding = find(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAMESPACE, "namespace": NAMESPACE}]
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == NAMESPACE
    assert pod["containers"][0]["image"].endswith(":0.1.0")


def test_the_cluster_role_and_pod_match_the_charts_defaults(helm: Helm) -> None:
    objects = rendered()
    chart = helm.template()
    assert rule_set(find(objects, "ClusterRole")["rules"]) == rule_set(find(chart, "ClusterRole")["rules"])
    ours = find(objects, "Deployment")["spec"]
    theirs = find(chart, "Deployment")["spec"]
    assert ours["strategy"] == theirs["strategy"] == {"type": "Recreate"}
    assert ours["replicas"] == theirs["replicas"] == 1
    pod, chart_pod = ours["template"]["spec"], theirs["template"]["spec"]
    assert pod["securityContext"] == chart_pod["securityContext"]
    (main,) = pod["containers"]
    (chart_main,) = chart_pod["containers"]
    for key in ("command", "securityContext", "livenessProbe", "ports", "resources", "volumeMounts"):
        assert main[key] == chart_main[key], key
    # The same arguments, plus the default connection the base names.
    assert set(main["args"]) - set(chart_main["args"]) == {
        f"--default-connection={NAMESPACE}/dynatrace-connection"
    }


def test_the_deployment_arguments_are_accepted_by_the_operator_cli() -> None:
    from apitoken_operator import cli
    from apitoken_operator.runner import settings_from

    argv = find(rendered(), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    args = cli.build_parser(argv).parse_args(argv)
    assert settings_from(args).default_connection == f"{NAMESPACE}/dynatrace-connection"
    assert args.all_namespaces and args.peering is None and args.metrics_port == 9090


@pytest.mark.controlplane
def test_kubectl_apply_k_deploy_works(cluster: Cluster, k8s: kubernetes.client.ApiClient) -> None:
    """The real thing, then everything but the CRD removed again (the session's ApiTokens live on it)."""
    objects = rendered()
    try:
        result = kubectl("apply", "-k", str(DEPLOY), kubeconfig=cluster.kubeconfig)
        assert result.returncode == 0, result.stderr[-1500:]
        assert "PodSecurity" not in result.stderr, result.stderr
        apps: Any = kubernetes.client.AppsV1Api(k8s)
        deployment = apps.read_namespaced_deployment(NAMESPACE, NAMESPACE)
        assert deployment.spec.template.spec.service_account_name == NAMESPACE
        core: Any = kubernetes.client.CoreV1Api(k8s)
        namespace = core.read_namespace(NAMESPACE)
        assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
        again = kubectl("apply", "-k", str(DEPLOY), kubeconfig=cluster.kubeconfig)
        assert again.returncode == 0 and "configured" not in again.stdout, again.stdout  # idempotent
    finally:
        kept_out = [o for o in objects if o["kind"] != "CustomResourceDefinition"]
        kubectl(
            "delete",
            "--ignore-not-found",
            "--wait=false",
            "-f",
            "-",
            kubeconfig=cluster.kubeconfig,
            stdin=yaml.safe_dump_all(kept_out),
        )

    def gone() -> bool:
        try:
            kubernetes.client.RbacAuthorizationV1Api(k8s).read_cluster_role(NAMESPACE)
        except ApiException as error:
            return bool(error.status == 404)
        return False

    wait_until(gone, what="the ClusterRole to be deleted")


def test_the_examples_hold_no_token_and_are_complete() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        text = path.read_text()
        assert not TOKEN_PATTERN.search(text), f"{path.name} holds something shaped like a token"
        documents = [d for d in yaml.safe_load_all(text) if d]
        assert documents, path.name
        assert all("namespace" not in d["metadata"] for d in documents), f"{path.name}: use kubectl -n"
        assert text.lstrip().startswith("#"), f"{path.name} should say what it is and how to apply it"
    names = {p.name for p in EXAMPLES.glob("*.yaml")}
    assert {
        "dynakube-api-token.yaml",
        "rotation.yaml",
        "adoption.yaml",
        "per-namespace-connection.yaml",
    } <= names


@pytest.mark.controlplane
def test_the_examples_are_accepted_by_the_api_server(cluster: Cluster, namespace: str) -> None:
    result = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(EXAMPLES), kubeconfig=cluster.kubeconfig
    )
    assert result.returncode == 0, result.stderr
    accepted = {line.split()[0] for line in result.stdout.splitlines() if "(server dry run)" in line}
    kinds = {"ApiToken": "apitoken.dynatrace.apitokens.io", "Secret": "secret"}
    expected = {
        f"{kinds[d['kind']]}/{d['metadata']['name']}"
        for path in EXAMPLES.glob("*.yaml")
        for d in yaml.safe_load_all(path.read_text())
        if d
    }
    assert accepted == expected


def test_the_optional_user_roles_match_the_charts_aggregated_roles(helm: Helm) -> None:
    result = kubectl("kustomize", str(DEPLOY / "user-roles"))
    assert result.returncode == 0, result.stderr
    ours = {o["metadata"]["name"]: o for o in yaml.safe_load_all(result.stdout) if o}
    chart = {
        o["metadata"]["name"].removeprefix("r-"): o
        for o in helm.template({"rbac": {"aggregateToDefaultRoles": True}}, release="r")
        if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith(("-edit", "-view"))
    }
    assert set(ours) == set(chart) == {f"{NAMESPACE}-edit", f"{NAMESPACE}-view"}
    for name, role in ours.items():
        assert rule_set(role["rules"]) == rule_set(chart[name]["rules"]), name
        aggregation = {k: v for k, v in role["metadata"]["labels"].items() if "aggregate-to" in k}
        assert aggregation == {
            k: v for k, v in chart[name]["metadata"]["labels"].items() if "aggregate-to" in k
        }, name


# --- components: the chart's namespaced-RBAC and peering modes -----------------------------------------

COMPONENTS = DEPLOY / "components"
RBAC_KINDS = ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
#: the components of each combination, in the order an overlay lists them
COMBINATIONS = {
    "namespaced-rbac": ("namespaced-rbac",),
    "peering": ("peering",),
    "namespaced-peering": ("namespaced-rbac", "namespaced-peering"),
    "admission-finalizer": ("admission-finalizer",),
}
#: the chart's values for each combination (watchNamespaces added where namespaces are watched)
CHART_VALUES: dict[str, dict[str, Any]] = {
    "namespaced-rbac": {"rbac": {"scope": "namespaces"}},
    "peering": {"peering": {"enabled": True}, "replicaCount": 2, "strategy": {"type": "RollingUpdate"}},
    "namespaced-peering": {
        "rbac": {"scope": "namespaces"},
        "peering": {"enabled": True},
        "replicaCount": 2,
        "strategy": {"type": "RollingUpdate"},
    },
    "admission-finalizer": {"admissionFinalizer": {"enabled": True}},
}


def overlay(
    tmp_path: pathlib.Path,
    combination: str,
    *,
    watched: Sequence[str] = (),
    operator_namespace: str | None = None,
) -> list[dict[str, Any]]:
    """Build an overlay as docs/kustomize.md describes it: deploy/ (moved to `operator_namespace` by an
    intermediate overlay if given), the combination's components, and for namespaced RBAC one directory per
    watched namespace (with each component's watched-namespace/) plus the --namespace arguments."""
    components = COMBINATIONS[combination]
    root = tmp_path / f"overlay-{combination}"
    root.mkdir()

    def rel(path: pathlib.Path, start: pathlib.Path) -> str:
        return os.path.relpath(path, start)

    base = rel(DEPLOY, root)
    if operator_namespace is not None:
        moved = root / "operator"
        moved.mkdir()
        kustomization = {"namespace": operator_namespace, "resources": [rel(DEPLOY, moved)]}
        (moved / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        base = "operator"
    resources = [base]
    for name in watched:
        directory = root / f"watch-{name}"
        directory.mkdir()
        kustomization = {
            "namespace": name,
            "resources": [
                rel(COMPONENTS / component / "watched-namespace", directory)
                for component in components
                if (COMPONENTS / component / "watched-namespace").is_dir()
            ],
        }
        (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        resources.append(directory.name)
    top: dict[str, Any] = {
        "resources": resources,
        "components": [rel(COMPONENTS / component, root) for component in components],
    }
    if watched:
        ops = [
            {
                "op": "add",
                "path": f"/spec/template/spec/containers/0/args/{1 + i}",
                "value": f"--namespace={n}",
            }
            for i, n in enumerate(watched)
        ]
        top["patches"] = [{"target": {"kind": "Deployment", "name": NAMESPACE}, "patch": yaml.safe_dump(ops)}]
    (root / "kustomization.yaml").write_text(yaml.safe_dump(top))
    result = kubectl("kustomize", str(root))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def rbac_objects(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] in RBAC_KINDS
    }


def assert_same_rbac(ours: list[dict[str, Any]], chart: list[dict[str, Any]]) -> None:
    """The same Roles and bindings (kind, namespace, name), the same rules, roleRefs and subjects."""
    mine, theirs = rbac_objects(ours), rbac_objects(chart)
    assert sorted(mine) == sorted(theirs)
    for key, role in mine.items():
        if key[0] in ("Role", "ClusterRole"):
            assert rule_set(role["rules"]) == rule_set(theirs[key]["rules"]), key
            names = [sorted(r.get("resourceNames", [])) for r in role["rules"]]
            assert names == [sorted(r.get("resourceNames", [])) for r in theirs[key]["rules"]], key
        else:
            assert role["roleRef"] == theirs[key]["roleRef"], key
            assert role["subjects"] == theirs[key]["subjects"], key


def scope_args(objects: list[dict[str, Any]]) -> list[str]:
    args = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    modes = ("--namespace", "--all-namespaces", "--peering", "--standalone", "--default-connection")
    return [a for a in args if a.startswith(modes)]


def chart_like_deploy(helm: Helm, values: dict[str, Any], namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """The chart with the names deploy/ uses (release name = the chart name) and its default connection."""
    values = {**values, "defaultConnection": {"existingSecret": "dynatrace-connection"}}
    return helm.template(values, release=NAMESPACE, namespace=namespace)


def test_the_namespaced_rbac_component_matches_the_charts_namespaced_mode(
    helm: Helm, tmp_path: pathlib.Path
) -> None:
    watched = ["team-a", "team-b"]
    ours = overlay(tmp_path, "namespaced-rbac", watched=watched)
    chart = chart_like_deploy(helm, {"rbac": {"scope": "namespaces"}, "watchNamespaces": watched})
    assert_same_rbac(ours, chart)
    assert scope_args(ours) == scope_args(chart)
    assert not [o for o in ours if o["kind"] == "ClusterRole" and o["metadata"]["name"] == NAMESPACE]


def peering_objects(objects: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted(
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
        for o in objects
        if o["kind"] in ("KopfPeering", "ClusterKopfPeering")
    )


@pytest.mark.parametrize(
    ("combination", "watched"), [("peering", ()), ("namespaced-peering", ("team-a", "team-b"))]
)
def test_the_peering_components_match_the_charts_peering_modes(
    helm: Helm, tmp_path: pathlib.Path, combination: str, watched: tuple[str, ...]
) -> None:
    """Cluster-wide: the ClusterKopfPeering and the rule in the ClusterRole. With namespaced RBAC: a
    KopfPeering named as --peering in each watched namespace (where the operator's Standby reads it) and
    the rule in each namespace's Role, nothing cluster-wide."""
    ours = overlay(tmp_path, combination, watched=watched)
    values = {**CHART_VALUES[combination], **({"watchNamespaces": list(watched)} if watched else {})}
    chart = chart_like_deploy(helm, values)
    assert_same_rbac(ours, chart)
    assert scope_args(ours) == scope_args(chart)
    mine, theirs = find(ours, "Deployment")["spec"], find(chart, "Deployment")["spec"]
    assert (mine["replicas"], mine["strategy"]) == (theirs["replicas"], theirs["strategy"])
    env = mine["template"]["spec"]["containers"][0]["env"]
    assert env == theirs["template"]["spec"]["containers"][0]["env"]
    assert peering_objects(ours) == peering_objects(chart)
    peering_arg = next(a for a in scope_args(ours) if a.startswith("--peering="))
    assert {name for _, _, name in peering_objects(ours)} == {peering_arg.removeprefix("--peering=")}
    if watched:
        assert {namespace for _, namespace, _ in peering_objects(ours)} == set(watched)
    for name in ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"):
        crd = find(ours, "CustomResourceDefinition", name)
        assert crd["spec"] == find(chart, "CustomResourceDefinition", name)["spec"], name
    budget, chart_budget = find(ours, "PodDisruptionBudget"), find(chart, "PodDisruptionBudget")
    assert budget["metadata"]["namespace"] == chart_budget["metadata"]["namespace"] == NAMESPACE
    assert budget["spec"]["minAvailable"] == chart_budget["spec"]["minAvailable"]
    assert (
        budget["spec"]["selector"]["matchLabels"].items()
        <= find(ours, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )


def test_the_admission_finalizer_component_is_the_charts_policy(helm: Helm, tmp_path: pathlib.Path) -> None:
    """The same MutatingAdmissionPolicy and binding (every namespace, as the base watches) as the chart's
    admissionFinalizer; nothing else added."""
    ours = overlay(tmp_path, "admission-finalizer")
    chart = chart_like_deploy(helm, CHART_VALUES["admission-finalizer"])
    for kind in ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"):
        mine, theirs = find(ours, kind), find(chart, kind)
        assert mine["metadata"]["name"] == theirs["metadata"]["name"]
        assert mine["spec"] == theirs["spec"], kind
    assert find(ours, "MutatingAdmissionPolicyBinding")["spec"]["matchResources"] == {"namespaceSelector": {}}
    assert len(ours) == len(rendered()) + 2


def test_the_peering_components_crds_are_the_charts() -> None:
    chart = ROOT / "charts" / "dynatrace-apitoken-operator" / "files" / "kopf-peering-crds"
    ours = COMPONENTS / "peering" / "crds"
    copies = sorted(p.name for p in ours.glob("*.yaml") if p.name != "kustomization.yaml")
    assert copies == sorted(p.name for p in chart.glob("*.yaml"))
    for path in chart.glob("*.yaml"):
        assert (ours / path.name).read_bytes() == path.read_bytes(), f"copy {path} to {ours}"


def test_the_components_follow_the_operator_into_another_namespace(tmp_path: pathlib.Path) -> None:
    """An intermediate overlay moving deploy/ elsewhere moves the components' subjects and objects too."""
    objects = overlay(tmp_path, "namespaced-rbac", watched=["team-a"], operator_namespace="ops")
    for key, each in rbac_objects(objects).items():
        for subject in each.get("subjects", []):
            assert subject["namespace"] == "ops", key
    assert ("Role", "ops", f"{NAMESPACE}-default-connection") in rbac_objects(objects)
    peering = overlay(tmp_path, "peering", operator_namespace="ops")
    assert find(peering, "PodDisruptionBudget")["metadata"]["namespace"] == "ops"
    both = overlay(tmp_path, "namespaced-peering", watched=["team-a"], operator_namespace="ops")
    assert find(both, "PodDisruptionBudget")["metadata"]["namespace"] == "ops"
    for key, each in rbac_objects(both).items():
        for subject in each.get("subjects", []):
            assert subject["namespace"] == "ops", key
    assert peering_objects(both) == [("KopfPeering", "team-a", NAMESPACE)]


def test_namespaced_peering_without_namespaced_rbac_before_it_fails_to_build(tmp_path: pathlib.Path) -> None:
    """Its argument patch replaces --standalone where namespaced-rbac leaves it: another order must fail
    the build rather than replace the wrong argument."""
    root = tmp_path / "wrong-order"
    root.mkdir()
    components = [os.path.relpath(COMPONENTS / c, root) for c in ("namespaced-peering", "namespaced-rbac")]
    top = {"resources": [os.path.relpath(DEPLOY, root)], "components": components}
    (root / "kustomization.yaml").write_text(yaml.safe_dump(top))
    result = kubectl("kustomize", str(root))
    assert result.returncode != 0 and "test failed" in result.stderr, result.stderr


@pytest.mark.controlplane
@pytest.mark.parametrize("combination", list(COMBINATIONS))
def test_the_components_are_accepted_by_the_api_server(
    tmp_path: pathlib.Path, cluster: Cluster, namespace: str, combination: str
) -> None:
    """Server-side dry run, the operator moved into the test's namespace (which exists, unlike deploy/'s);
    the peering objects are left out (their CRDs are only being dry-run created)."""
    watched = [namespace, "default"] if combination.startswith("namespaced") else []
    objects = overlay(tmp_path, combination, watched=watched, operator_namespace=namespace)
    sent = [o for o in objects if o["kind"] not in ("ClusterKopfPeering", "KopfPeering")]
    result = kubectl(
        "apply", "--dry-run=server", "-f", "-", kubeconfig=cluster.kubeconfig, stdin=yaml.safe_dump_all(sent)
    )
    assert result.returncode == 0, result.stderr[-1500:]
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(sent)


def test_the_overlays_in_docs_kustomize_md_build_to_the_charts_modes(
    helm: Helm, tmp_path: pathlib.Path
) -> None:
    """docs/kustomize.md's overlays, their repository URLs pointed at this checkout, built as written: each
    my-overlay/kustomization.yaml with the my-overlay/team-a/kustomization.yaml that follows it (team-b
    alike)."""
    text = (ROOT / "docs" / "kustomize.md").read_text()
    blocks = re.findall(r"^```yaml\n# (\S+)[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    assert {name for name, _ in blocks} == {
        "my-overlay/kustomization.yaml",
        "my-overlay/team-a/kustomization.yaml",
    }, blocks
    overlays: list[dict[str, str]] = []
    for name, body in blocks:
        if name == "my-overlay/kustomization.yaml":
            overlays.append({"top": body})
        else:
            assert overlays and "team" not in overlays[-1], "a team-a file belongs to the overlay before it"
            overlays[-1]["team"] = body
    url = re.compile(r"https://git\.example\.com/platform/dynatrace-apitoken-operator\.git//(\S+)\?ref=\S+")
    combinations = ["namespaced-rbac", "peering", "namespaced-peering", "admission-finalizer"]
    assert len(overlays) == len(combinations)  # in this order in the document
    for index, (files, combination) in enumerate(zip(overlays, combinations, strict=True)):
        root = tmp_path / f"doc-{index}" / "my-overlay"
        directories = {root: files["top"]}
        values = dict(CHART_VALUES[combination])
        if "team" in files:
            directories[root / "team-a"] = files["team"]
            directories[root / "team-b"] = files["team"].replace("namespace: team-a", "namespace: team-b")
            values["watchNamespaces"] = ["team-a", "team-b"]
        for directory, body in directories.items():
            directory.mkdir(parents=True)
            local = body
            for match in url.finditer(body):
                local = local.replace(match.group(0), os.path.relpath(ROOT / match.group(1), directory))
            (directory / "kustomization.yaml").write_text(local)
        result = kubectl("kustomize", str(root))
        assert result.returncode == 0, result.stderr
        ours = [d for d in yaml.safe_load_all(result.stdout) if d]
        chart = chart_like_deploy(helm, values)
        assert_same_rbac(ours, chart)
        assert scope_args(ours) == scope_args(chart), combination
        assert peering_objects(ours) == peering_objects(chart), combination
        for kind in ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"):
            mine = [o["spec"] for o in ours if o["kind"] == kind]
            assert mine == [o["spec"] for o in chart if o["kind"] == kind], (combination, kind)
