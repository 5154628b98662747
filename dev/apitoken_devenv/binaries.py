"""Build-or-reuse the control-plane binaries (etcd, kube-apiserver, kube-controller-manager, helm).

They are built from Go modules with the Go toolchain, since these machines have no container engine
and cannot download release binaries. A cold build takes minutes, so binaries are cached outside the
work tree under a key derived from everything that determines them (go.mod, go.sum, the commands'
sources, the Go version); a warm start costs nothing. `KUBEBUILDER_ASSETS` pointing at envtest
binaries is honoured for etcd and kube-apiserver.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
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


def cache_key(source: pathlib.Path, go: str) -> str:
    digest = hashlib.sha256(go.encode())
    for path in sorted([source / "go.mod", source / "go.sum", *source.glob("cmd/**/*.go")]):
        digest.update(path.relative_to(source).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_control_plane(progress: Progress = default_progress) -> Binaries:
    """Return the four binaries, building the missing ones one after another (they need ~3 GB each)."""
    source = module_dir()
    target = cache_root() / cache_key(source, go_version())
    paths = {name: target / name for name in CONTROL_PLANE_PACKAGES}
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        for name in ("etcd", "kube-apiserver"):
            if (pathlib.Path(assets) / name).is_file():
                paths[name] = pathlib.Path(assets) / name
    for name, package in CONTROL_PLANE_PACKAGES.items():
        if not paths[name].is_file():
            _build(package, paths[name], cwd=source, progress=progress)
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


def _build(package: str, target: pathlib.Path, *, cwd: pathlib.Path, progress: Progress) -> None:
    with tempfile.TemporaryDirectory(prefix=f"build-{target.name}-", dir=_ensure(target.parent)) as scratch:
        partial = pathlib.Path(scratch) / target.name
        _run_build(
            ["go", "build", "-trimpath", "-o", str(partial), package],
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
