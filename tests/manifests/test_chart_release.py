"""The chart's version bump rule (scripts/chart_fingerprint.py): values.yaml, values.schema.json,
templates/, files/ (the CRDs) and Chart.yaml apart from its version never change under a chart version
already recorded."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = pathlib.Path("scripts") / "chart_fingerprint.py"
CHART = pathlib.Path("charts") / "dynatrace-apitoken-operator"
FINGERPRINT = pathlib.Path("tests") / "manifests" / "data" / "chart-release.json"


def run(root: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / SCRIPT), *args], check=False, capture_output=True, text=True, timeout=60
    )


def test_the_chart_is_unchanged_since_its_version_was_recorded() -> None:
    result = run(ROOT, "--check")
    assert result.returncode == 0, result.stderr


def test_the_recorded_version_is_the_charts() -> None:
    recorded = json.loads((ROOT / FINGERPRINT).read_text())
    assert f"\nversion: {recorded['version']}\n" in (ROOT / CHART / "Chart.yaml").read_text()


def scratch_tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """The script, the chart's covered files and the fingerprint, copied: the real ones stay untouched."""
    scratch = tmp_path / "tree"
    for part in (
        SCRIPT,
        FINGERPRINT,
        CHART / "Chart.yaml",
        CHART / "values.yaml",
        CHART / "values.schema.json",
    ):
        (scratch / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / part, scratch / part)
    for directory in ("templates", "files"):
        shutil.copytree(ROOT / CHART / directory, scratch / CHART / directory)
    return scratch


def bump(scratch: pathlib.Path, version: str) -> None:
    chart_yaml = scratch / CHART / "Chart.yaml"
    old = json.loads((scratch / FINGERPRINT).read_text())["version"]
    chart_yaml.write_text(chart_yaml.read_text().replace(f"\nversion: {old}\n", f"\nversion: {version}\n"))


def test_a_change_without_a_version_bump_fails_and_cannot_be_recorded(tmp_path: pathlib.Path) -> None:
    scratch = scratch_tree(tmp_path)
    assert run(scratch, "--check").returncode == 0
    for edit in (
        "values.yaml",
        "values.schema.json",
        "templates/deployment.yaml",
        "files/crds/apitokens.dynatrace.apitokens.io.yaml",
        "files/kopf-peering-crds/kopfpeerings.kopf.dev.yaml",
        "Chart.yaml",
    ):
        copy = scratch_tree(tmp_path / edit.replace("/", "-"))
        path = copy / CHART / edit
        path.write_text(path.read_text() + "\n")
        check = run(copy, "--check")
        assert check.returncode == 1, edit
        assert (
            "bump the chart version" in check.stderr and "python scripts/chart_fingerprint.py" in check.stderr
        )
        refused = run(copy)
        assert refused.returncode == 1 and "bump `version` in Chart.yaml first" in refused.stderr, edit
        assert run(copy, "--check").returncode == 1, "the refused recording must not have written anything"
    # A new template file counts too, and a new file under files/.
    (scratch / CHART / "templates" / "new.yaml").write_text("# nothing yet\n")
    assert run(scratch, "--check").returncode == 1
    other = scratch_tree(tmp_path / "new-crd")
    (other / CHART / "files" / "crds" / "new.yaml").write_text("kind: CustomResourceDefinition\n")
    assert run(other, "--check").returncode == 1


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('kubeVersion: ">=1.29.0-0"', 'kubeVersion: ">=1.30.0-0"'),
        ('appVersion: "0.1.0"', 'appVersion: "0.1.1"'),
    ],
)
def test_chart_yaml_fields_other_than_version_need_a_bump(tmp_path: pathlib.Path, old: str, new: str) -> None:
    """kubeVersion decides where the chart installs, appVersion the image it runs: both are the chart's."""
    scratch = scratch_tree(tmp_path)
    chart_yaml = scratch / CHART / "Chart.yaml"
    assert old in chart_yaml.read_text()
    chart_yaml.write_text(chart_yaml.read_text().replace(old, new))
    check = run(scratch, "--check")
    assert check.returncode == 1 and "bump the chart version" in check.stderr, check.stderr


def test_a_version_bump_alone_keeps_the_hash(tmp_path: pathlib.Path) -> None:
    """The version is recorded beside the hash, not in it: after a bump only the recorded version is stale."""
    scratch = scratch_tree(tmp_path)
    before = json.loads((scratch / FINGERPRINT).read_text())
    bump(scratch, "99.0.0")
    stale = run(scratch, "--check")
    assert stale.returncode == 1 and "update the fingerprint" in stale.stderr, stale.stderr
    assert run(scratch).returncode == 0
    assert json.loads((scratch / FINGERPRINT).read_text()) == {**before, "version": "99.0.0"}


def test_after_a_bump_the_fingerprint_must_be_recorded_and_then_holds(tmp_path: pathlib.Path) -> None:
    scratch = scratch_tree(tmp_path)
    values = scratch / CHART / "values.yaml"
    values.write_text(values.read_text() + "\n# a change\n")
    bump(scratch, "99.0.0")
    stale = run(scratch, "--check")
    assert stale.returncode == 1 and "update the fingerprint" in stale.stderr, stale.stderr
    recorded = run(scratch)
    assert recorded.returncode == 0, recorded.stderr
    assert run(scratch, "--check").returncode == 0
    assert json.loads((scratch / FINGERPRINT).read_text())["version"] == "99.0.0"
    # A version lower than the recorded one is refused.
    bump(scratch, "1.0.0")
    values.write_text(values.read_text() + "# another\n")
    lower = run(scratch)
    assert lower.returncode == 1 and "lower than the recorded" in lower.stderr


def test_line_endings_do_not_count(tmp_path: pathlib.Path) -> None:
    """A Windows checkout (core.autocrlf) holds the same chart."""
    scratch = scratch_tree(tmp_path)
    values = scratch / CHART / "values.yaml"
    values.write_bytes(values.read_bytes().replace(b"\n", b"\r\n"))
    assert run(scratch, "--check").returncode == 0


@pytest.mark.needs_git_history  # deselected by tests/conftest.py in a tree without history (a tarball)
def test_no_version_was_ever_recorded_with_two_fingerprints() -> None:
    """Deleting the fingerprint and recording again under the same version does not get past the rule:
    git history holds every fingerprint a version had (deselected without history, e.g. a tarball)."""
    log = subprocess.run(
        ["git", "log", "--format=%H", "--", FINGERPRINT.as_posix()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert log.returncode == 0, log.stderr
    seen: dict[str, set[str]] = {}
    texts = [(ROOT / FINGERPRINT).read_text()]
    for commit in log.stdout.split():
        shown = subprocess.run(
            ["git", "show", f"{commit}:{FINGERPRINT.as_posix()}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if shown.returncode == 0:  # not a deletion
            texts.append(shown.stdout)
    for text in texts:
        record = json.loads(text)
        seen.setdefault(record["version"], set()).add(record["sha256"])
    twice = {version: sorted(hashes) for version, hashes in seen.items() if len(hashes) > 1}
    assert not twice, f"chart versions recorded with different contents (bump the version instead): {twice}"
