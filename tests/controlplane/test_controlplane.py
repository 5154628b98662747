"""The local control plane behaves like a real cluster in every way the operator relies on."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import kubernetes
import pytest
from kubernetes.client import ApiException

from apitoken_devenv import binaries
from tests.fixtures.cluster import Cluster, RestrictedKubeconfig, wait_until

pytestmark = pytest.mark.controlplane

GROUP, VERSION, PLURAL = "test.apitokens.io", "v1", "widgets"


def widget(name: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def custom(k8s: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(k8s)


def test_invalid_object_is_rejected_by_the_schema_with_its_message(custom, namespace):
    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, widget("w", size=99, colour="pink")
        )
    assert rejected.value.status == 422
    assert "spec.size" in rejected.value.body and "less than or equal to 10" in rejected.value.body
    assert "spec.colour" in rejected.value.body and "Unsupported value" in rejected.value.body
    with pytest.raises(ApiException, match=r"spec\.size: Required value"):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w2"))


def test_status_subresource_is_left_alone_by_spec_writes(custom, namespace):
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w", size=1))
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "w", {"status": {"phase": "Ready"}}
    )
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w", {"spec": {"size": 2}, "status": {"phase": "Overwritten"}}
    )
    current = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
    assert current["spec"]["size"] == 2
    assert current["status"] == {"phase": "Ready"}
    assert current["metadata"]["generation"] == 2


def test_finalizer_holds_deletion_until_removed(custom, namespace):
    body = widget("w", size=1)
    body["metadata"]["finalizers"] = ["test.apitokens.io/hold"]
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
    time.sleep(0.5)
    held = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
    assert held["metadata"]["deletionTimestamp"]
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w", {"metadata": {"finalizers": None}}
    )
    wait_until(
        lambda: _gone(lambda: custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")),
        what="the widget to be deleted",
    )


def test_owned_secret_is_garbage_collected_after_its_owner(k8s, custom, namespace):
    owner = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w", size=1))
    core = kubernetes.client.CoreV1Api(k8s)
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {
                "name": "owned",
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "Widget",
                        "name": "w",
                        "uid": owner["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "stringData": {"k": "v"},
        },
    )
    core.create_namespaced_secret(namespace, {"metadata": {"name": "unowned"}, "stringData": {"k": "v"}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
    wait_until(
        lambda: _gone(lambda: core.read_namespaced_secret("owned", namespace)),
        timeout=60,
        what="the garbage collector to delete the owned Secret",
    )
    assert core.read_namespaced_secret("unowned", namespace).metadata.name == "unowned"


def test_namespace_deletion_completes(k8s, custom):
    core = kubernetes.client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": "doomed"}})
    custom.create_namespaced_custom_object(GROUP, VERSION, "doomed", PLURAL, widget("w", size=1))
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "c"}, "data": {"k": "v"}})
    core.delete_namespace("doomed")
    wait_until(
        lambda: _gone(lambda: core.read_namespace("doomed")), timeout=60, what="the namespace to be deleted"
    )


def test_restricted_identity_is_denied_what_its_rbac_does_not_grant(
    cluster: Cluster, namespace: str, restricted_kubeconfig: RestrictedKubeconfig
):
    kubeconfig = restricted_kubeconfig(
        namespace,
        rules=[{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create"]}],
    )
    with cluster.api_client(kubeconfig) as client:
        core = kubernetes.client.CoreV1Api(client)
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "allowed"}})
        assert [
            c.metadata.name
            for c in core.list_namespaced_config_map(namespace).items
            if c.metadata.name == "allowed"
        ]
        for denied in (
            lambda: core.list_namespaced_secret(namespace),
            lambda: core.delete_namespaced_config_map("allowed", namespace),
            lambda: core.list_namespaced_config_map("default"),
            core.list_namespace,
        ):
            with pytest.raises(ApiException) as error:
                denied()
            assert error.value.status == 403
            assert "forbidden" in error.value.body


def test_pinned_helm_installs_a_trivial_chart(cluster: Cluster, namespace: str, tmp_path: pathlib.Path, k8s):
    helm = binaries.ensure_helm()
    version = subprocess.run(
        [str(helm), "version", "--short"], capture_output=True, text=True, check=True
    ).stdout
    assert version.startswith(binaries.HELM_VERSION)
    chart = tmp_path / "trivial"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: trivial\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n"
        "  greeting: {{ .Values.greeting | quote }}\n"
    )
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "HELM_CACHE_HOME": str(tmp_path / "hc"),
        "HELM_CONFIG_HOME": str(tmp_path / "hcfg"),
        "HELM_DATA_HOME": str(tmp_path / "hd"),
    }
    subprocess.run(
        [str(helm), "install", "demo", str(chart), "-n", namespace, "--set", "greeting=hi", "--wait"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    config_map = kubernetes.client.CoreV1Api(k8s).read_namespaced_config_map("demo-cm", namespace)
    assert config_map.data == {"greeting": "hi"}
    listed = subprocess.run(
        [str(helm), "list", "-n", namespace, "-q"], env=env, check=True, capture_output=True, text=True
    )
    assert listed.stdout.split() == ["demo"]


def test_dev_cluster_command_serves_and_leaves_no_process(tmp_path: pathlib.Path):
    workdir = tmp_path / "dev"
    command = subprocess.Popen(
        [sys.executable, "-m", "apitoken_operator", "dev", "cluster", "--dir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        kubeconfig = workdir / "kubeconfig"
        wait_until(lambda: kubeconfig.exists() or command.poll() is not None, timeout=120, what="dev cluster")
        wait_until(lambda: _children_of(command.pid) or command.poll() is not None, what="components")
        components = _children_of(command.pid)
        assert command.poll() is None, command.stdout.read() if command.stdout else ""
        with kubernetes.config.new_client_from_config(config_file=str(kubeconfig)) as client:
            names = [n.metadata.name for n in kubernetes.client.CoreV1Api(client).list_namespace().items]
        assert "default" in names
        assert len(components) == 3
    finally:
        command.send_signal(signal.SIGINT)
        command.wait(timeout=60)
    assert command.returncode == 0
    assert not [pid for pid in components if _alive(pid)], "a control-plane process outlived `dev cluster`"
    assert not kubeconfig.exists()


def _gone(read) -> bool:
    try:
        read()
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def _children_of(pid: int) -> list[int]:
    children = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_api_server_reports_a_release_version(cluster: Cluster, k8s) -> None:
    """binaries.py stamps the version at link time, so `/version` (what helm checks a chart's kubeVersion
    against) is the release go.mod pins, not component-base's unstamped v0.0.0-master+$Format:%H$."""
    info = kubernetes.client.VersionApi(k8s).get_code()
    assert not info.git_version.startswith("v0.0.0"), info
    assert info.major.isdigit() and info.minor.rstrip("+").isdigit(), info
    if cluster.backend == "local":  # another backend's version is its own
        git_version, major, minor = binaries.kubernetes_version(binaries.module_dir())
        assert (info.git_version, info.major, info.minor) == (git_version, major, minor)
        assert info.git_tree_state == "clean"
