"""The control plane's build: the version stamped into the Kubernetes commands, and the cache key."""

from __future__ import annotations

import pathlib

import pytest

from apitoken_devenv import binaries

GO_MOD = """module example.com/controlplane

go 1.26.0

require (
\tgo.etcd.io/etcd/server/v3 v3.7.0 // indirect
\tk8s.io/kubernetes v1.37.2 // indirect
)
"""


def module(tmp_path: pathlib.Path, go_mod: str = GO_MOD) -> pathlib.Path:
    (tmp_path / "cmd" / "pki").mkdir(parents=True)
    (tmp_path / "cmd" / "pki" / "main.go").write_text("package main\n")
    (tmp_path / "go.mod").write_text(go_mod)
    (tmp_path / "go.sum").write_text("")
    return tmp_path


def test_the_version_is_read_from_go_mod(tmp_path: pathlib.Path) -> None:
    assert binaries.kubernetes_version(module(tmp_path)) == ("v1.37.2", "1", "37")
    assert binaries.kubernetes_version(binaries.module_dir())[0].startswith("v1.")
    with pytest.raises(ValueError, match=r"k8s\.io/kubernetes"):
        binaries.kubernetes_version(module(tmp_path / "none", "module x\n\ngo 1.26.0\n"))


def test_both_version_packages_are_stamped_as_kubernetes_own_build_does(tmp_path: pathlib.Path) -> None:
    flags = binaries.version_ldflags(module(tmp_path)).split()
    assert flags[::2] == ["-X"] * (len(flags) // 2)
    stamped = dict(flag.split("=", 1) for flag in flags[1::2])
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert stamped[f"{package}.gitVersion"] == "v1.37.2"
        assert stamped[f"{package}.gitMajor"] == "1"
        assert stamped[f"{package}.gitMinor"] == "37"
        assert stamped[f"{package}.gitTreeState"] == "clean"


def test_the_stamp_is_part_of_the_cache_key(tmp_path: pathlib.Path) -> None:
    """A binary built without the stamp (or with another) is never reused; callers without ldflags keep
    their old key."""
    source = module(tmp_path)
    unstamped = binaries.cache_key(source, "go1.26.8")
    stamped = binaries.cache_key(source, "go1.26.8", binaries.version_ldflags(source))
    assert stamped != unstamped
    assert binaries.cache_key(source, "go1.26.8", "") == unstamped
    (source / "go.mod").write_text(GO_MOD.replace("v1.37.2", "v1.37.3"))
    assert binaries.cache_key(source, "go1.26.8", binaries.version_ldflags(source)) not in {
        stamped,
        unstamped,
    }


def test_only_the_kubernetes_commands_are_stamped(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = module(tmp_path / "module")
    built: dict[str, str] = {}

    def build(
        package: str, target: pathlib.Path, *, cwd: pathlib.Path, progress: object, ldflags: str
    ) -> None:
        built[target.name] = ldflags
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("")

    monkeypatch.setenv("APITOKEN_CONTROLPLANE_SRC", str(source))
    monkeypatch.setenv("APITOKEN_CONTROLPLANE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setattr(binaries, "go_version", lambda: "go1.26.8")
    monkeypatch.setattr(binaries, "_build", build)
    found = binaries.ensure_control_plane(progress=lambda _: None)
    ldflags = binaries.version_ldflags(source)
    assert built == {"pki": "", "etcd": "", "kube-apiserver": ldflags, "kube-controller-manager": ldflags}
    assert found.kube_apiserver.parent.name == binaries.cache_key(source, "go1.26.8", ldflags)
