"""The chart's RBAC is exactly enough: the operator, holding only the chart ServiceAccount's token, goes
through a whole lifecycle without a single permission error, and the chart grants nothing beyond that.

Each test `helm install`s the chart (release name = the test's namespace, so the cluster-scoped objects do
not collide), asks for a token of the chart's ServiceAccount (TokenRequest), writes a kubeconfig holding
only that token (a client certificate beside it would make the operator admin), and runs the operator with
it. The local control plane runs no pods, so the operator runs as a local process, as the Deployment would.

`EXPECTED_*` below is the rule set derived in docs/rbac.md; the render tests compare the chart's rules to it
exactly, so an added verb or resource fails until it is proven here and documented there.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pathlib
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client import ApiException

from apitoken_devenv import binaries, controlplane
from apitoken_emulator.threaded import EmulatorThread
from apitoken_operator.dynatrace.secrets import TokenSecret
from tests.fixtures.cluster import Cluster, installed_crds, wait_until, write_token_kubeconfig
from tests.fixtures.leaks import LeakSources
from tests.fixtures.operator import CONNECTION, GROUP, PLURAL, VERSION, OperatorEnv, settle
from tests.manifests.test_chart import CHART, Helm, find

pytestmark = pytest.mark.controlplane

Rule = tuple[str, str, str]  # (apiGroup, resource, verb)


def rules(group: str, resource: str, verbs: str, *, names: tuple[str, ...] = ()) -> set[Rule]:
    return {(group, resource + (f"[{','.join(names)}]" if names else ""), verb) for verb in verbs.split()}


#: on ApiTokens, their Secrets and Events: cluster-wide (ClusterRole) or per watched namespace (Role)
EXPECTED_WORKLOAD = (
    rules("dynatrace.apitokens.io", "apitokens", "get list watch patch")
    | rules("dynatrace.apitokens.io", "apitokens/status", "patch")
    | rules("dynatrace.apitokens.io", "apitokens/finalizers", "update")
    | rules("", "secrets", "get list watch create update patch delete")
    | rules("", "events", "create")
)
#: what kopf reads cluster-wide, always
EXPECTED_CRDS = rules("apiextensions.k8s.io", "customresourcedefinitions", "list watch")
#: ... and when given namespaces to watch
EXPECTED_NAMESPACES = rules("", "namespaces", "list watch")
EXPECTED_CLUSTER_PEERING = rules("kopf.dev", "clusterkopfpeerings", "list watch patch")
EXPECTED_NAMESPACED_PEERING = rules("kopf.dev", "kopfpeerings", "list watch patch")

SPEC = {"name": "rbac token", "scopes": ["metrics.read", "entities.read"], "enabled": True}
#: the log lines of a permission problem: kopf's APIForbiddenError and its "Not enough permissions"
#: fallbacks, our KubeError ("Kubernetes API 403: ..."), the API server's "... is forbidden: User ..."
PERMISSION_PROBLEM = re.compile(r"forbidden|not enough permissions|\b403\b", re.IGNORECASE)
TIMESTAMP = re.compile(r"\d{2}:\d{2}:\d{2}[,.]\d+")


def flatten(rule_list: list[dict[str, Any]]) -> set[Rule]:
    flat: set[Rule] = set()
    for rule in rule_list:
        names = tuple(rule.get("resourceNames") or ())
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                flat |= rules(group, resource, " ".join(rule["verbs"]), names=names)
    return flat


def granted(cluster_role: Any) -> set[Rule]:
    """The rules of a ClusterRole read through the client (models, snake_case) as flat triples."""
    return flatten(
        [
            {
                "apiGroups": r.api_groups,
                "resources": r.resources,
                "verbs": r.verbs,
                "resourceNames": r.resource_names,
            }
            for r in cluster_role.rules
        ]
    )


def permission_problems(log: str) -> list[str]:
    """Lines that show a refused request (timestamps removed first: ",403" milliseconds are no 403)."""
    return [line for line in log.splitlines() if PERMISSION_PROBLEM.search(TIMESTAMP.sub("", line))]


def service_account_kubeconfig(
    cluster: Cluster, k8s: kubernetes.client.ApiClient, namespace: str, account: str, path: pathlib.Path
) -> pathlib.Path:
    """A kubeconfig with only a fresh token of the ServiceAccount (TokenRequest), as the pod would have."""
    core: Any = kubernetes.client.CoreV1Api(k8s)
    request = core.create_namespaced_service_account_token(
        account, namespace, {"spec": {"expirationSeconds": 3600}}
    )
    kubeconfig = write_token_kubeconfig(cluster, token=request.status.token, path=path)
    with cluster.api_client(kubeconfig) as client:  # it really is the ServiceAccount, not the admin
        authentication: Any = kubernetes.client.AuthenticationV1Api(client)
        review = authentication.create_self_subject_review({})
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:{account}"
    return kubeconfig


def account_name(release: str) -> str:
    return f"{release}-dynatrace-apitoken-operator"


@pytest.fixture
def helm(cluster: Cluster, tmp_path: pathlib.Path) -> Helm:
    return Helm(binary=binaries.ensure_helm(), home=tmp_path / "helm", kubeconfig=cluster.kubeconfig)


@pytest.fixture
def release(helm: Helm, namespace: str) -> Iterator[str]:
    """The release name (= the namespace); uninstalled afterwards, taking its cluster-scoped objects along."""
    yield namespace
    helm.uninstall(namespace, namespace)


def stored_id(env: OperatorEnv, secret: str) -> str | None:
    """The token id of the secret stored in the Secret (None: no Secret or no value)."""
    value = env.secret_value(secret)
    return value.token_id if value is not None else None


def label(env: OperatorEnv, secret: str, key: str) -> str | None:
    body: Any = env.core.read_namespaced_secret(secret, env.namespace)
    result: str | None = (body.metadata.labels or {}).get(key)
    return result


def enabled(env: OperatorEnv, token_id: str) -> bool:
    record = env.emulator.emulator.record_of(token_id)
    return record is not None and record.enabled


# --- the rendered rules are exactly the expected ones ---------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, EXPECTED_WORKLOAD | EXPECTED_CRDS),
        ({"watchNamespaces": ["a", "team-*"]}, EXPECTED_WORKLOAD | EXPECTED_CRDS | EXPECTED_NAMESPACES),
        ({"peering": {"enabled": True}}, EXPECTED_WORKLOAD | EXPECTED_CRDS | EXPECTED_CLUSTER_PEERING),
        (
            {"peering": {"enabled": True}, "watchNamespaces": ["a"]},
            EXPECTED_WORKLOAD | EXPECTED_CRDS | EXPECTED_NAMESPACES | EXPECTED_NAMESPACED_PEERING,
        ),
    ],
    ids=["defaults", "namespaces", "peering", "peering-namespaces"],
)
def test_the_chart_cluster_role_holds_exactly_the_proven_rules(
    helm: Helm, values: dict[str, Any], expected: set[Rule]
) -> None:
    objects = helm.template(values)
    assert flatten(find(objects, "ClusterRole")["rules"]) == expected
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding")]


def test_namespaced_scope_renders_the_same_rules_split_by_where_they_apply(helm: Helm) -> None:
    objects = helm.template(
        {
            "rbac": {"scope": "namespaces"},
            "watchNamespaces": ["a", "b"],
            "peering": {"enabled": True},
            "defaultConnection": {"existingSecret": "conn", "namespace": "ops"},
        }
    )
    roles = {o["metadata"]["namespace"]: flatten(o["rules"]) for o in objects if o["kind"] == "Role"}
    assert roles == {
        "a": EXPECTED_WORKLOAD | EXPECTED_NAMESPACED_PEERING,
        "b": EXPECTED_WORKLOAD | EXPECTED_NAMESPACED_PEERING,
        "ops": rules("", "secrets", "get", names=("conn",)),
    }
    assert flatten(find(objects, "ClusterRole")["rules"]) == EXPECTED_CRDS | EXPECTED_NAMESPACES


# --- the operator under the chart's ServiceAccount -----------------------------------------------------


def test_cluster_scoped_rbac_carries_a_whole_lifecycle_without_a_permission_error(
    operator_env: OperatorEnv,
    helm: Helm,
    release: str,
    k8s: kubernetes.client.ApiClient,
    tmp_path: pathlib.Path,
) -> None:
    """create, update, Secret metadata repair, drift, rotation, Secret deletion, Secret move, delete."""
    env, namespace = operator_env, operator_env.namespace
    helm.install(
        release,
        namespace,
        {
            "crds": {"enabled": False},  # the session installed the CRD already
            "watchNamespaces": [namespace],  # as the operator below runs: --namespace <this one>
            "defaultConnection": {"existingSecret": CONNECTION},
        },
    )
    role = kubernetes.client.RbacAuthorizationV1Api(k8s).read_cluster_role(account_name(release))
    assert granted(role) == EXPECTED_WORKLOAD | EXPECTED_CRDS | EXPECTED_NAMESPACES
    # admissionFinalizer=auto on this server (1.37 serves MutatingAdmissionPolicy): bound to the one
    # watched namespace
    admission: Any = kubernetes.client.AdmissionregistrationV1Api(k8s)
    binding = admission.read_mutating_admission_policy_binding(
        f"{account_name(release)}.finalizer.dynatrace.apitokens.io"
    )
    assert binding.spec.match_resources.namespace_selector.match_expressions[0].values == [namespace]
    kubeconfig = service_account_kubeconfig(
        env.cluster, k8s, namespace, account_name(release), tmp_path / "sa.kubeconfig"
    )
    env.start("--drift-interval", "1", kubeconfig=kubeconfig)
    emulator, store = env.emulator.emulator, env.emulator.store

    # create: finalizer and annotations (patch), status (apitokens/status), Secret (create), Events
    env.apply("tok", {**SPEC, "rotation": {"gracePeriod": "2s"}, "secret": {"labels": {"team": "a"}}})
    first = env.wait_ready("tok")["status"]["id"]
    assert stored_id(env, "tok") == first

    # update: the spec's name and scopes put on the token in place
    env.patch_spec("tok", {"name": "rbac token renamed", "scopes": ["metrics.read"]})
    wait_until(
        lambda: (r := emulator.record_of(first)) is not None and r.name == "rbac token renamed",
        what="the rename in Dynatrace",
    )
    assert env.wait_ready("tok")["status"]["id"] == first

    # someone edits the Secret's labels: seen through the Secret watch, repaired by a Secret patch
    env.core.patch_namespaced_secret("tok", namespace, {"metadata": {"labels": {"team": "b"}}})
    wait_until(
        lambda: label(env, "tok", "team") == "a",
        what="the Secret's label to be restored",
    )

    # drift: the token edited in Dynatrace is put back (found by a listing, the object read with get)
    env.emulator.call(store.update, emulator.record_of(first), now=emulator.clock(), enabled=False)
    wait_until(lambda: enabled(env, first), what="the drift to be put back")

    # rotation on request: a new token, the Secret replaced (update), the old token gone after 2 s
    env.annotate("tok", **{"dynatrace.apitokens.io/rotate": "1"})
    wait_until(lambda: stored_id(env, "tok") not in (None, first), what="the Secret to switch")
    rotated = env.wait_ready("tok")["status"]["id"]
    assert rotated != first
    wait_until(lambda: emulator.record_of(first) is None, timeout=20, what="the old token's retirement")

    # the Secret deleted by someone: a new token and Secret (create)
    env.core.delete_namespaced_secret("tok", namespace)
    wait_until(
        lambda: stored_id(env, "tok") not in (None, rotated),
        what="a new token in a new Secret",
    )

    # the Secret moved: written under the new name, the old one deleted (delete)
    env.patch_spec("tok", {"secret": {"name": "tok-moved"}})
    wait_until(lambda: env.secret_value("tok") is None, what="the old Secret to go")
    moved = env.secret_value("tok-moved")
    assert moved is not None and env.wait_ready("tok")["status"]["secretName"] == "tok-moved"

    # delete: the token deleted in Dynatrace, the finalizer released
    env.delete("tok")
    env.wait_gone("tok")
    assert emulator.record_of(moved) is None
    assert env.live_tokens() == []

    # Events are posted in the background: the last can land just after the object is gone
    wanted = {"Created", "Updated", "Rotated", "Deleted"}
    wait_until(lambda: wanted <= {e.reason for e in env.events("tok")}, what=f"the Events {sorted(wanted)}")
    settle(1.5)  # a drift interval more, with nothing left to do
    env.stop()  # before the release goes (its bindings with it): the shutdown is checked too
    log = env.log_text()
    assert permission_problems(log) == [], "\n".join(permission_problems(log)[:10])


def test_namespaced_scope_is_enough_and_confines_the_operator_to_its_namespaces(
    operator_env: OperatorEnv,
    helm: Helm,
    release: str,
    k8s: kubernetes.client.ApiClient,
    tmp_path: pathlib.Path,
) -> None:
    """Roles in the watched namespace, one readable Secret (the default connection) elsewhere, no more."""
    env, namespace = operator_env, operator_env.namespace
    core: Any = env.core
    elsewhere = f"t-{uuid.uuid4().hex[:10]}"  # the default connection's namespace, not watched
    core.create_namespace({"metadata": {"name": elsewhere}})
    try:
        source = core.read_namespaced_secret(CONNECTION, namespace)
        core.create_namespaced_secret(elsewhere, {"metadata": {"name": "shared"}, "data": source.data})
        core.create_namespaced_secret(
            elsewhere, {"metadata": {"name": "unrelated"}, "stringData": {"k": "v"}}
        )
        helm.install(
            release,
            namespace,
            {
                "crds": {"enabled": False},
                "rbac": {"scope": "namespaces"},
                "watchNamespaces": [namespace],
                "defaultConnection": {"existingSecret": "shared", "namespace": elsewhere},
            },
        )
        kubeconfig = service_account_kubeconfig(
            env.cluster, k8s, namespace, account_name(release), tmp_path / "sa.kubeconfig"
        )
        with env.cluster.api_client(kubeconfig) as client:
            confined: Any = kubernetes.client.CoreV1Api(client)
            assert confined.read_namespaced_secret("shared", elsewhere).metadata.name == "shared"
            for refused in (
                lambda: confined.read_namespaced_secret("unrelated", elsewhere),
                lambda: confined.list_namespaced_secret(elsewhere),
                lambda: confined.list_namespaced_secret("default"),
                confined.list_secret_for_all_namespaces,
            ):
                with pytest.raises(ApiException) as error:
                    refused()
                assert error.value.status == 403

        env.start(
            "--default-connection", f"{elsewhere}/shared", default_connection=False, kubeconfig=kubeconfig
        )
        env.apply("tok", SPEC)
        token_id = env.wait_ready("tok")["status"]["id"]
        env.patch_spec("tok", {"enabled": False})
        wait_until(lambda: not enabled(env, token_id), what="the update")
        env.delete("tok")
        env.wait_gone("tok")
        assert env.live_tokens() == []
        env.stop()
        log = env.log_text()
        assert permission_problems(log) == [], "\n".join(permission_problems(log)[:10])
    finally:
        with contextlib.suppress(ApiException):
            core.delete_namespace(elsewhere)


@pytest.fixture
def peering_crds(helm: Helm, k8s: kubernetes.client.ApiClient) -> Iterator[None]:
    """The kopf.dev CRDs as the chart renders them (installed here: the session's CRD is not Helm's)."""
    crds = [
        o
        for o in helm.template({"peering": {"enabled": True}})
        if o["kind"] == "CustomResourceDefinition" and o["spec"]["group"] == "kopf.dev"
    ]
    assert len(crds) == 2
    with installed_crds(k8s, crds):
        yield


@pytest.mark.usefixtures("peering_crds")
def test_peering_needs_only_its_peering_rules_and_the_operator_announces_itself(
    operator_env: OperatorEnv,
    helm: Helm,
    release: str,
    k8s: kubernetes.client.ApiClient,
    tmp_path: pathlib.Path,
) -> None:
    env, namespace = operator_env, operator_env.namespace
    helm.install(
        release,
        namespace,
        {
            "crds": {"enabled": False},
            "watchNamespaces": [namespace],
            "peering": {"enabled": True, "name": "tokens"},
            "defaultConnection": {"existingSecret": CONNECTION},
        },
    )
    custom: Any = kubernetes.client.CustomObjectsApi(k8s)
    # the chart's post-install hook created the peering object the operator needs
    assert custom.get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", "tokens")
    kubeconfig = service_account_kubeconfig(
        env.cluster, k8s, namespace, account_name(release), tmp_path / "sa.kubeconfig"
    )
    env.start("--peering", "tokens", kubeconfig=kubeconfig)
    env.apply("tok", SPEC)
    env.wait_ready("tok")
    peers = wait_until(
        lambda: custom.get_namespaced_custom_object(
            "kopf.dev", "v1", namespace, "kopfpeerings", "tokens"
        ).get("status"),
        what="the operator's keep-alive in the KopfPeering",
    )
    assert len(peers) == 1
    env.delete("tok")
    env.wait_gone("tok")
    env.stop()  # before the release goes (its bindings with it): the shutdown is checked too
    log = env.log_text()
    assert permission_problems(log) == [], "\n".join(permission_problems(log)[:10])


# --- cluster-wide, as installed: a private control plane ------------------------------------------------


def run_as_deployed(args: list[str], kubeconfig: pathlib.Path, log: pathlib.Path) -> subprocess.Popen[bytes]:
    """The operator with the Deployment's own arguments; only the ports moved to free local ones."""
    liveness = f"--liveness=http://127.0.0.1:{controlplane.free_port()}"
    argv = [
        re.sub(r"^--liveness=http://0\.0\.0\.0:\d+", liveness, arg)
        for arg in args
        if not arg.startswith("--metrics-port")
    ]
    argv += [f"--metrics-port={controlplane.free_port()}", "--kubeconfig", str(kubeconfig), "--verbose"]
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "apitoken_operator", *argv],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_cluster_wide_as_installed_with_the_deployments_own_arguments(
    tmp_path: pathlib.Path, leak_sources: LeakSources
) -> None:
    """A control plane of its own, so that an operator watching every namespace sees only this test's
    objects: the chart installed with its defaults, then upgraded to peering (ClusterKopfPeering)."""
    crd_files = [
        *sorted((CHART / "files" / "crds").glob("*.yaml")),
        *sorted((CHART / "files" / "kopf-peering-crds").glob("*.yaml")),
    ]
    with (
        controlplane.running_control_plane(
            workdir=tmp_path / "plane", crds=controlplane.load_yaml_documents(crd_files)
        ) as plane,
        EmulatorThread(validate_responses=True) as emulator,
    ):
        cluster = Cluster(kubeconfig=plane.kubeconfig, backend="local")
        helm = Helm(binary=binaries.ensure_helm(), home=tmp_path / "helm", kubeconfig=plane.kubeconfig)
        with cluster.api_client() as k8s:
            core: Any = kubernetes.client.CoreV1Api(k8s)
            custom: Any = kubernetes.client.CustomObjectsApi(k8s)
            for name in ("apitoken-system", "team-a"):
                core.create_namespace({"metadata": {"name": name}})
            core.create_namespaced_secret(
                "apitoken-system",
                {
                    "metadata": {"name": "dynatrace-connection"},
                    "stringData": {"apiUrl": emulator.base_url, "apiToken": emulator.admin_token.reveal()},
                },
            )
            # The CRDs exist already (as from `kubectl apply -f crds/`), so the chart leaves them alone.
            values = {
                "crds": {"enabled": False},
                "defaultConnection": {"existingSecret": "dynatrace-connection"},
                "connections": {"allowInsecureHttp": True},  # the emulator serves plain http
            }
            helm.install("dto", "apitoken-system", values)
            rbac = kubernetes.client.RbacAuthorizationV1Api(k8s)
            role = rbac.read_cluster_role("dto-dynatrace-apitoken-operator")
            assert granted(role) == EXPECTED_WORKLOAD | EXPECTED_CRDS
            kubeconfig = service_account_kubeconfig(
                cluster, k8s, "apitoken-system", "dto-dynatrace-apitoken-operator", tmp_path / "sa.kubeconfig"
            )

            def deployment_args() -> list[str]:
                manifest = helm.run("get", "manifest", "dto", "-n", "apitoken-system").stdout
                objects = [d for d in yaml.safe_load_all(manifest) if d]
                container = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
                args: list[str] = container["args"]
                return args

            def lifecycle(name: str, log: pathlib.Path) -> None:
                body = {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "ApiToken",
                    "metadata": {"name": name},
                    "spec": SPEC,
                }
                # right after an install or upgrade made the finalizer policy, the API server answers 503
                # for a second or so (docs/install.md#the-finalizer-at-admission): retry, as clients do
                wait_until(
                    lambda: _created_unless_503(custom, body),
                    timeout=15,
                    interval=0.25,
                    what=f"ApiToken {name} to be accepted",
                )

                def ready() -> bool:
                    status = (
                        custom.get_namespaced_custom_object(GROUP, VERSION, "team-a", PLURAL, name).get(
                            "status"
                        )
                        or {}
                    )
                    return any(
                        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or ()
                    )

                wait_until(ready, what=f"{name} to be Ready; log:\n{log.read_text()[-3000:]}")
                secret = core.read_namespaced_secret(name, "team-a")
                token = TokenSecret(base64.b64decode(secret.data["token"]).decode())
                assert emulator.emulator.record_of(token) is not None
                custom.delete_namespaced_custom_object(GROUP, VERSION, "team-a", PLURAL, name)

                def gone() -> bool:
                    try:
                        custom.get_namespaced_custom_object(GROUP, VERSION, "team-a", PLURAL, name)
                    except ApiException as error:
                        return bool(error.status == 404)
                    return False

                wait_until(gone, what=f"{name} to be deleted")
                assert emulator.emulator.record_of(token) is None

            # standalone, every namespace
            args = deployment_args()
            assert args[:3] == ["run", "--all-namespaces", "--standalone"]
            log = tmp_path / "operator-standalone.log"
            leak_sources.add_file(log)
            process = run_as_deployed(args, kubeconfig, log)
            try:
                lifecycle("standalone", log)
            finally:
                stop(process)
            assert permission_problems(log.read_text()) == [], log.read_text()[-3000:]

            # upgraded to peering: the ClusterKopfPeering hook, the peering rule, --peering
            helm.install("dto", "apitoken-system", {**values, "peering": {"enabled": True}}, upgrade=True)
            args = deployment_args()
            assert "--peering=dto-dynatrace-apitoken-operator" in args
            log = tmp_path / "operator-peering.log"
            leak_sources.add_file(log)
            process = run_as_deployed(args, kubeconfig, log)
            try:
                lifecycle("peering", log)
                peering = custom.get_cluster_custom_object(
                    "kopf.dev", "v1", "clusterkopfpeerings", "dto-dynatrace-apitoken-operator"
                )
                assert peering.get("status"), peering
            finally:
                stop(process)
            assert permission_problems(log.read_text()) == [], log.read_text()[-3000:]
            helm.uninstall("dto", "apitoken-system")
        assert emulator.contract_violations == []


def _created_unless_503(custom: Any, body: dict[str, Any]) -> bool:
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, "team-a", PLURAL, body)
    except kubernetes.client.ApiException as error:
        if error.status != 503:
            raise
        return False
    return True
