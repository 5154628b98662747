"""A real, throwaway Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

Each component runs in its own process group with free ports in one working folder (certificates,
data, logs, `kubeconfig`). Everything started is stopped on exit, on a failed start, on SIGINT/SIGTERM
in the foreground command, and (Linux) when the parent dies, through PR_SET_PDEATHSIG.

There is no kubelet and no scheduler: enough for CRDs, validation, status, finalizers, watches,
garbage collection, namespaces, RBAC and service-account tokens, which is what an operator needs.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from apitoken_devenv.binaries import Binaries, Progress, default_progress, ensure_control_plane

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """A component failed to start; the message carries the tail of its log."""


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log: pathlib.Path
    #: the command it was started with, kept so that it can be started again after `stop()`
    command: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        stop_process_group(self.process, timeout=STOP_TIMEOUT)

    def restart(self) -> None:
        """Start the same command again after `stop()`, into the same log: same ports, same data."""
        if self.alive():
            raise ControlPlaneError(f"{self.name} is still running")
        self.process = _popen(self.command, self.log)


def stop_process_group(process: subprocess.Popen[bytes], *, timeout: float) -> None:
    """SIGTERM the process's group, SIGKILL it after `timeout` seconds; reap it either way."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class ControlPlane:
    """A running control plane. `kubeconfig` is an admin (system:masters) kubeconfig."""

    workdir: pathlib.Path
    server: str
    pki: pathlib.Path
    components: list[Component] = field(default_factory=list)

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.workdir / "kubeconfig"

    @property
    def ca_file(self) -> pathlib.Path:
        return self.pki / "ca.crt"

    def pids(self) -> list[int]:
        return [c.process.pid for c in self.components]

    def stop(self) -> None:
        for component in reversed(self.components):  # controller-manager, apiserver, then etcd
            component.stop()

    def component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone, as an outage would: etcd keeps every object. It stops listening
        at once on SIGTERM but may then drain for the whole stop timeout, so it is killed after 1 s."""
        stop_process_group(self.component("kube-apiserver").process, timeout=1.0)

    def start_apiserver(self) -> None:
        """Start kube-apiserver again on the same port and etcd, and wait until it is ready."""
        apiserver = self.component("kube-apiserver")
        apiserver.restart()
        _wait_for(
            lambda: self.request("GET", "/readyz") == "ok", what="kube-apiserver /readyz", component=apiserver
        )

    def request(self, method: str, path: str, body: Any | None = None) -> Any:
        """A raw admin call to the API server, standard library only (used before clients are set up)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw and raw[:1] in b"{[" else raw.decode()

    def apply_crds(self, documents: Iterable[dict[str, Any]]) -> None:
        """Create (or replace) CRDs and wait until each is Established."""
        names = []
        for crd in documents:
            name = crd["metadata"]["name"]
            path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
            strict = (
                "?fieldValidation=Strict"  # an unknown field (e.g. a YAML slip) must fail here, not later
            )
            try:
                self.request("POST", path + strict, crd)
            except urllib.error.HTTPError as error:
                if error.code != 409:
                    raise ControlPlaneError(
                        f"CRD {name} refused: {error.read().decode(errors='replace')}"
                    ) from error
                current = self.request("GET", f"{path}/{name}")
                replacement = {
                    **crd,
                    "metadata": {
                        **crd["metadata"],
                        "resourceVersion": current["metadata"]["resourceVersion"],
                    },
                }
                self.request("PUT", f"{path}/{name}{strict}", replacement)
            names.append(name)
        for name in names:
            _wait_for(
                lambda n=name: _established(
                    self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}")
                ),
                what=f"CRD {name} to be established",
            )


def load_yaml_documents(paths: Iterable[pathlib.Path]) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in paths:
        documents.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return documents


@contextlib.contextmanager
def running_control_plane(
    *,
    workdir: pathlib.Path | None = None,
    crds: Sequence[dict[str, Any]] = (),
    binaries: Binaries | None = None,
    progress: Progress = default_progress,
) -> Iterator[ControlPlane]:
    """Start a control plane, yield it, and stop every process on the way out, whatever happens.

    CRDs given here are installed before kube-controller-manager starts: its garbage collector only
    learns about a new CRD's objects at its next discovery resync, about 30 s later.
    """
    binaries = binaries or ensure_control_plane(progress)
    owned_tempdir = workdir is None
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="apitoken-cp-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(workdir=workdir, server="", pki=workdir / "pki")
    failed = True
    try:
        _start(plane, binaries, crds=crds, progress=progress)
        failed = False
        yield plane
    finally:
        plane.stop()
        if owned_tempdir and not failed:
            shutil.rmtree(workdir, ignore_errors=True)
        elif failed:
            progress(f"control plane logs kept in {workdir}")


def _start(
    plane: ControlPlane, binaries: Binaries, *, crds: Sequence[dict[str, Any]], progress: Progress
) -> None:
    started = time.monotonic()
    workdir, pki = plane.workdir, plane.pki
    pki.mkdir(exist_ok=True)
    subprocess.run([str(binaries.pki), "-dir", str(pki)], check=True)
    etcd_client, etcd_peer, apiserver_port = free_ports(3)
    plane.server = f"https://127.0.0.1:{apiserver_port}"
    etcd = _spawn(
        plane,
        "etcd",
        [
            str(binaries.etcd),
            "--name=default",
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    _wait_for(lambda: _http_ok(f"http://127.0.0.1:{etcd_client}/health"), what="etcd", component=etcd)
    apiserver = _spawn(
        plane,
        "kube-apiserver",
        [
            str(binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={apiserver_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--authorization-mode=RBAC",
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
        ],
    )
    _wait_for(
        lambda: plane.request("GET", "/readyz") == "ok", what="kube-apiserver /readyz", component=apiserver
    )
    if crds:
        plane.apply_crds(crds)
    manager_kubeconfig = _write_kubeconfig(plane, pki / "admin.kubeconfig")
    manager = _spawn(
        plane,
        "kube-controller-manager",
        [
            str(binaries.kube_controller_manager),
            f"--kubeconfig={manager_kubeconfig}",
            "--controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--leader-elect=false",
            "--secure-port=0",
            "--v=1",
        ],
    )
    # The serviceaccount controller creating `default` in `default` shows the manager is working.
    _wait_for(
        lambda: _exists(plane, "/api/v1/namespaces/default/serviceaccounts/default"),
        what="kube-controller-manager",
        component=manager,
    )
    # Written last and atomically, so its presence means "ready" to people and scripts.
    _write_kubeconfig(plane, workdir / "kubeconfig.partial").replace(plane.kubeconfig)
    progress(f"control plane ready at {plane.server} in {time.monotonic() - started:.1f} s")


def _spawn(plane: ControlPlane, name: str, command: list[str]) -> Component:
    log = plane.workdir / f"{name}.log"
    component = Component(name=name, process=_popen(command, log), log=log, command=command)
    plane.components.append(component)
    return component


def _popen(command: list[str], log: pathlib.Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509
        )


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this child when the parent dies, even by SIGKILL (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _write_kubeconfig(plane: ControlPlane, path: pathlib.Path) -> pathlib.Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": plane.server, "certificate-authority": str(plane.ca_file)},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate": str(plane.pki / "admin.crt"),
                    "client-key": str(plane.pki / "admin.key"),
                },
            }
        ],
        "contexts": [
            {"name": "local", "context": {"cluster": "local", "user": "admin", "namespace": "default"}}
        ],
        "current-context": "local",
    }
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config))
    return path


def free_port() -> int:
    """A loopback port free right now (for a process about to bind it)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports free right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
        return bool(response.status == 200)


def _exists(plane: ControlPlane, path: str) -> bool:
    try:
        plane.request("GET", path)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise
    return True


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def _wait_for(
    check: Any, *, what: str, component: Component | None = None, timeout: float = START_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if component is not None and not component.alive():
            raise ControlPlaneError(
                f"{component.name} exited while waiting for {what}:\n{component.log_tail()}"
            )
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ssl.SSLError, ValueError) as error:
            last_error = error
        time.sleep(0.05)
    tail = f"\n{component.log_tail()}" if component else ""
    raise ControlPlaneError(
        f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error}){tail}"
    )
