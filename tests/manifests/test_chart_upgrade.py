"""`helm upgrade --reuse-values` from every earlier chart: the current chart renders with an old values set.

With `--reuse-values`, Helm renders the new chart with the old release's computed values *in place of* the
new chart's values.yaml: a key added since is simply absent (nil), so every template must read such a key
with a default. This is emulated exactly by rendering a copy of the chart whose values.yaml is the old one.

data/chart-values/<short-sha>.yaml holds the chart's values.yaml as of every commit that changed it (the
distinct ones), so that the test works without git history (a release tarball); when history is there, a
test checks that no earlier values.yaml is missing from them.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
from typing import Any

import kubernetes
import pytest
import yaml

from apitoken_devenv import binaries
from tests.fixtures.cluster import Cluster
from tests.manifests.test_chart import CHART, NOT_INSTALLED, Helm, container, find, server_dry_run

ROOT = CHART.parents[1]
HISTORY = pathlib.Path(__file__).parent / "data" / "chart-values"
EARLIER = sorted(HISTORY.glob("*.yaml"))
VALUES_PATH = CHART.relative_to(ROOT) / "values.yaml"
#: what a user may have set on an earlier release, on top of its defaults (keys every earlier chart had)
USER_VALUES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "peering": {"replicaCount": 2, "peering": {"enabled": True}, "strategy": {"type": "RollingUpdate"}},
    "namespaced-rbac": {
        "rbac": {"scope": "namespaces"},
        "watchNamespaces": ["team-a", "team-b"],
        "defaultConnection": {"existingSecret": "dynatrace-connection"},
    },
}
CASES = [(earlier, name) for earlier in EARLIER for name in USER_VALUES]
CASE_IDS = [f"{earlier.stem}-{name}" for earlier, name in CASES]
#: an argument of `apitoken-operator run`: a long option, with a non-empty value when it has one
FLAG = re.compile(r"--[a-z][a-z0-9]*(-[a-z0-9]+)*(=\S.*)?")


@pytest.fixture
def helm(tmp_path: pathlib.Path) -> Helm:
    return Helm(binary=binaries.ensure_helm(), home=tmp_path / "helm")


@pytest.fixture
def restricted_namespace(k8s: kubernetes.client.ApiClient, namespace: str) -> str:
    """The test's namespace, enforcing the restricted Pod Security Standard (as in test_chart.py)."""
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}
    kubernetes.client.CoreV1Api(k8s).patch_namespace(namespace, {"metadata": {"labels": labels}})
    return namespace


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def release_values(tmp_path: pathlib.Path, earlier: pathlib.Path, user: dict[str, Any]) -> pathlib.Path:
    """An earlier release's computed values: that chart's values.yaml with the user's values over it."""
    path = tmp_path / f"{earlier.stem}-computed.yaml"
    path.write_text(yaml.safe_dump(merged(yaml.safe_load(earlier.read_text()), user)))
    return path


def chart_with_values(tmp_path: pathlib.Path, values: pathlib.Path) -> pathlib.Path:
    """A copy of the current chart whose values.yaml is `values`: what `--reuse-values` renders."""
    copy = tmp_path / "chart" / CHART.name
    shutil.copytree(CHART, copy)
    shutil.copyfile(values, copy / "values.yaml")
    return copy


def render(helm: Helm, chart: pathlib.Path, *extra: str, namespace: str = "op") -> str:
    return helm.run("template", namespace, str(chart), "--namespace", namespace, *extra).stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_there_are_earlier_values_sets() -> None:
    assert len(EARLIER) >= 4, EARLIER


@pytest.mark.parametrize(("earlier", "user"), CASES, ids=CASE_IDS)
def test_reuse_values_from_an_earlier_chart_renders_well_formed_arguments(
    helm: Helm, tmp_path: pathlib.Path, earlier: pathlib.Path, user: str
) -> None:
    from apitoken_operator import cli

    old = release_values(tmp_path, earlier, USER_VALUES[user])
    reused = render(helm, chart_with_values(tmp_path, old))
    assert "%!" not in reused and "<nil>" not in reused, "a value added later is read without a default"
    main = container(documents(reused))
    args = main["args"]
    assert args[0] == "run"
    malformed = [a for a in args[1:] if not FLAG.fullmatch(a)]
    assert not malformed, f"malformed operator arguments: {malformed}"
    cli.build_parser(args).parse_args(args)  # argparse exits (SystemExit) on a bad value


@pytest.mark.parametrize(("earlier", "user"), CASES, ids=CASE_IDS)
def test_reuse_values_renders_what_the_current_defaults_would(
    helm: Helm, tmp_path: pathlib.Path, earlier: pathlib.Path, user: str
) -> None:
    """The templates' defaults are those of values.yaml: `--reuse-values` (old values only) renders the same
    as the current chart given the old values with `-f` (current defaults for the keys added since, as
    `--reset-then-reuse-values` does)."""
    old = release_values(tmp_path, earlier, USER_VALUES[user])
    reused = documents(render(helm, chart_with_values(tmp_path, old)))
    reset = documents(render(helm, CHART, "--values", str(old)))
    assert [(o["kind"], o["metadata"]["name"]) for o in reused] == [
        (o["kind"], o["metadata"]["name"]) for o in reset
    ]
    assert reused == reset


@pytest.mark.needs_git_history  # deselected by tests/conftest.py in a tree without history (a tarball)
def test_every_earlier_values_yaml_in_git_history_has_a_fixture() -> None:
    """Deselected without git history (a tarball); a shallow clone checks the part it has."""
    log = subprocess.run(
        ["git", "log", "--format=%h", "--", str(VALUES_PATH)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert log.returncode == 0 and log.stdout.strip(), log.stderr
    stored = [yaml.safe_load(p.read_text()) for p in EARLIER]
    current = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = []
    for commit in log.stdout.split():
        shown = subprocess.run(
            ["git", "show", f"{commit}:{VALUES_PATH.as_posix()}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        values = yaml.safe_load(shown.stdout)
        if values != current and values not in stored:
            missing.append(commit)
    assert not missing, (
        "values.yaml of these commits is not among the fixtures; for each: git show "
        f"<commit>:{VALUES_PATH.as_posix()} > {HISTORY.relative_to(ROOT)}/<commit>.yaml: {missing}"
    )


@pytest.mark.controlplane
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reuse_values_from_an_earlier_chart_is_accepted_by_the_api_server(
    helm: Helm,
    tmp_path: pathlib.Path,
    cluster: Cluster,
    restricted_namespace: str,
    case: tuple[pathlib.Path, str],
) -> None:
    earlier, user = case
    values = USER_VALUES[user]
    if "watchNamespaces" in values:  # Roles go into namespaces that exist
        values = {**values, "watchNamespaces": [restricted_namespace, "default"]}
    old = release_values(tmp_path, earlier, values)
    objects = documents(render(helm, chart_with_values(tmp_path, old), namespace=restricted_namespace))
    sent = [o for o in objects if o["kind"] not in {*NOT_INSTALLED, "CustomResourceDefinition"}]
    assert find(sent, "Deployment")
    result = server_dry_run(cluster, sent)
    assert result.returncode == 0, result.stderr
    assert "PodSecurity" not in result.stderr, result.stderr
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(sent)
