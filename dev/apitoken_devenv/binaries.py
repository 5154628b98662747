"""Build-or-reuse the control-plane binaries (etcd, kube-apiserver, kube-controller-manager, helm).

They are built from Go modules with the Go toolchain, since these machines have no container engine
and cannot download release binaries. A cold build takes minutes, so binaries are cached outside the
work tree under a key derived from everything that determines them (go.mod, go.sum, the commands'
sources, the Go version, the version stamped into kube-apiserver and kube-controller-manager); a warm start
costs nothing. `KUBEBUILDER_ASSETS` pointing at envtest
binaries is honoured for etcd and kube-apiserver.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from apitoken_devenv.paths import SOURCE_ROOT

#: helm is its own Go module with its own dependencies, so it is built with `go install pkg@version`.
HELM_VERSION = "v4.3.1"
HELM_PACKAGE = "helm.sh/helm/v4/cmd/helm"
HELM_VERSION_VARIABLE = "helm.sh/helm/v4/internal/version.version"

#: name -> Go package, relative to the control-plane module.
CONTROL_PLANE_PACKAGES = {
    "pki": "./cmd/pki",
    "etcd": "./cmd/etcd",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
}

#: The Kubernetes commands whose version is stamped at link time, as Kubernetes' own build does
#: (hack/lib/version.sh, kube::version::ldflags): unstamped, `go build` leaves component-base's default
#: v0.0.0-master+$Format:%H$, which `/version` reports and no chart's `kubeVersion` range admits.
STAMPED_PACKAGES = frozenset({"kube-apiserver", "kube-controller-manager"})
#: The packages hack/lib/version.sh stamps, each with the same variables.
VERSION_PACKAGES = ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")
KUBERNETES_REQUIREMENT = re.compile(r"^\s*k8s\.io/kubernetes\s+(v(\d+)\.(\d+)\.\d+\S*)", re.MULTILINE)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Binaries:
    pki: pathlib.Path
    etcd: pathlib.Path
    kube_apiserver: pathlib.Path
    kube_controller_manager: pathlib.Path


def default_progress(message: str) -> None:
    print(f"[controlplane] {message}", file=sys.stderr, flush=True)


def module_dir() -> pathlib.Path:
    """The Go module that pins the control plane: `APITOKEN_CONTROLPLANE_SRC`, or the source tree's copy."""
    configured = os.environ.get("APITOKEN_CONTROLPLANE_SRC")
    candidates = [pathlib.Path(configured)] if configured else []
    candidates.append(SOURCE_ROOT / "tools" / "controlplane")
    for candidate in candidates:
        if (candidate / "go.mod").is_file():
            return candidate
    raise FileNotFoundError(
        "the control-plane Go module (tools/controlplane) was not found; run from a source checkout "
        "or set APITOKEN_CONTROLPLANE_SRC"
    )


def cache_root() -> pathlib.Path:
    """Outside the work tree, so fresh clones (and CI on the same machine) reuse what was built."""
    configured = os.environ.get("APITOKEN_CONTROLPLANE_CACHE")
    if configured:
        return pathlib.Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "apitoken-operator" / "controlplane"


def go_version() -> str:
    if shutil.which("go") is None:
        raise FileNotFoundError("the Go toolchain (`go`) is needed to build the local control plane")
    return subprocess.run(
        ["go", "env", "GOVERSION"], check=True, capture_output=True, text=True
    ).stdout.strip()


def cache_key(source: pathlib.Path, go: str, ldflags: str = "") -> str:
    """A key of the module's files and the Go version, and of the `ldflags` its binaries are linked with.

    Without `ldflags` the key is what it always was, so callers that stamp nothing keep their caches.
    """
    digest = hashlib.sha256(go.encode())
    for path in sorted([source / "go.mod", source / "go.sum", *source.glob("cmd/**/*.go")]):
        digest.update(path.relative_to(source).as_posix().encode())
        digest.update(path.read_bytes())
    if ldflags:
        digest.update(b"\0ldflags\0" + ldflags.encode())
    return digest.hexdigest()[:16]


def kubernetes_version(source: pathlib.Path) -> tuple[str, str, str]:
    """(gitVersion, major, minor) of the k8s.io/kubernetes release that the module's go.mod requires."""
    found = KUBERNETES_REQUIREMENT.search((source / "go.mod").read_text())
    if found is None:
        raise ValueError(f"{source / 'go.mod'} requires no k8s.io/kubernetes version")
    return found.group(1), found.group(2), found.group(3)


def version_ldflags(source: pathlib.Path) -> str:
    """The -X flags that make the Kubernetes commands report the release go.mod pins (`/version`).

    gitCommit and buildDate keep their defaults: the module cache holds no commit, and a date would make
    two builds of the same sources differ.
    """
    git_version, major, minor = kubernetes_version(source)
    stamps = {"gitVersion": git_version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    return " ".join(
        f"-X {package}.{variable}={value}"
        for package in VERSION_PACKAGES
        for variable, value in stamps.items()
    )


def ensure_control_plane(progress: Progress = default_progress) -> Binaries:
    """Return the four binaries, building the missing ones one after another (they need ~3 GB each)."""
    source = module_dir()
    ldflags = version_ldflags(source)
    target = cache_root() / cache_key(source, go_version(), ldflags)
    paths = {name: target / name for name in CONTROL_PLANE_PACKAGES}
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        for name in ("etcd", "kube-apiserver"):
            if (pathlib.Path(assets) / name).is_file():
                paths[name] = pathlib.Path(assets) / name
    for name, package in CONTROL_PLANE_PACKAGES.items():
        if not paths[name].is_file():
            stamp = ldflags if name in STAMPED_PACKAGES else ""
            _build(package, paths[name], cwd=source, progress=progress, ldflags=stamp)
    return Binaries(
        pki=paths["pki"],
        etcd=paths["etcd"],
        kube_apiserver=paths["kube-apiserver"],
        kube_controller_manager=paths["kube-controller-manager"],
    )


def ensure_helm(progress: Progress = default_progress) -> pathlib.Path:
    target = cache_root() / f"helm-{HELM_VERSION}-{go_version()}" / "helm"
    if not target.is_file():
        ldflags = f"-X {HELM_VERSION_VARIABLE}={HELM_VERSION}"
        _run_build(
            ["go", "install", "-trimpath", f"-ldflags={ldflags}", f"{HELM_PACKAGE}@{HELM_VERSION}"],
            name="helm",
            target=target,
            cwd=None,
            env={"GOBIN": str(target.parent)},
            progress=progress,
        )
    return target


def build_go_package(
    module: pathlib.Path, package: str, target: pathlib.Path, progress: Progress = default_progress
) -> pathlib.Path:
    """Build `package` of the Go module at `module` into `target`, atomically (for the other tools/ modules).

    Callers choose `target` under `cache_root()` by a `cache_key` of the module, as ensure_control_plane does.
    """
    _build(package, target, cwd=module, progress=progress)
    return target


def _build(
    package: str, target: pathlib.Path, *, cwd: pathlib.Path, progress: Progress, ldflags: str = ""
) -> None:
    with tempfile.TemporaryDirectory(prefix=f"build-{target.name}-", dir=_ensure(target.parent)) as scratch:
        partial = pathlib.Path(scratch) / target.name
        stamp = [f"-ldflags={ldflags}"] if ldflags else []
        _run_build(
            ["go", "build", "-trimpath", *stamp, "-o", str(partial), package],
            name=target.name,
            target=partial,
            cwd=cwd,
            env={},
            progress=progress,
        )
        partial.replace(target)  # atomic: an interrupted build never leaves a half binary in the cache


def _run_build(
    command: list[str],
    *,
    name: str,
    target: pathlib.Path,
    cwd: pathlib.Path | None,
    env: dict[str, str],
    progress: Progress,
) -> None:
    progress(f"building {name} (first time only; kube-apiserver takes ~5 minutes on 2 cores)…")
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    assert process.stdout is not None
    # A thread drains the output so the loop below can report progress even while go prints nothing.
    drain = threading.Thread(target=lambda: output.extend(process.stdout or ()), daemon=True)
    drain.start()
    while True:
        try:
            process.wait(timeout=30)
            break
        except subprocess.TimeoutExpired:
            progress(f"  still building {name}: {time.monotonic() - started:.0f} s")
    drain.join()
    if process.returncode != 0 or not target.is_file():
        raise RuntimeError(f"building {name} failed ({' '.join(command)}):\n{''.join(output[-40:])}")
    progress(f"built {name} in {time.monotonic() - started:.0f} s")


def _ensure(path: pathlib.Path) -> pathlib.Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
