"""Hold the chart's version bump rule: a change to what the chart installs needs a new chart version.

The fingerprint file records the chart version and a hash of what decides what the chart installs for a
given set of values: values.yaml, values.schema.json, templates/, files/ (the CRDs the templates render:
files/crds/, files/kopf-peering-crds/) and Chart.yaml apart from its `version:` line (kubeVersion,
appVersion, which the image tag defaults to, the name the templates use). A change to any of them under an
unchanged version would give two different charts one version: `helm upgrade --reuse-values`, chart
caches and mirrors then behave as if nothing changed. tests/manifests/test_chart_release.py runs `--check`.

    .venv/bin/python scripts/chart_fingerprint.py           # record the fingerprint after bumping the version
    .venv/bin/python scripts/chart_fingerprint.py --check   # exit 1, saying what to do, if it is stale

Recording refuses to store a changed hash under the version already recorded: bump `version` in
Chart.yaml first (docs/contributing.md#the-charts-version).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "dynatrace-apitoken-operator"
FINGERPRINT = ROOT / "tests" / "manifests" / "data" / "chart-release.json"
#: what the hash covers, relative to the chart: files, or directories taken whole
COVERED = ("Chart.yaml", "values.yaml", "values.schema.json", "templates", "files")
#: what the covered files are called in messages
COVERED_TEXT = "values.yaml, values.schema.json, templates/, files/ or Chart.yaml (apart from `version`)"
VERSION = re.compile(r"^version:\s*[\"']?([^\"'\s#]+)", re.MULTILINE)


def chart_version() -> str:
    found = VERSION.search((CHART / "Chart.yaml").read_text())
    if found is None:
        raise SystemExit(f"no version in {CHART / 'Chart.yaml'}")
    return found.group(1)


#: the line Chart.yaml's hash leaves out: the version is recorded beside the hash, not in it
VERSION_LINE = re.compile(rb"^version:[^\n]*\n?", re.MULTILINE)


def covered_files() -> list[pathlib.Path]:
    files: list[pathlib.Path] = []
    for name in COVERED:
        path = CHART / name
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return files


def chart_hash() -> str:
    """sha256 over each covered file's path and content, line endings normalised (a Windows checkout);
    Chart.yaml without its `version:` line, so that a bump alone keeps the hash."""
    digest = hashlib.sha256()
    for path in covered_files():
        relative = path.relative_to(CHART).as_posix()
        content = path.read_bytes().replace(b"\r\n", b"\n")
        if relative == "Chart.yaml":
            content = VERSION_LINE.sub(b"", content, count=1)
        digest.update(relative.encode() + b"\0")
        digest.update(content + b"\0")
    return digest.hexdigest()


def recorded() -> dict[str, str]:
    if not FINGERPRINT.exists():
        return {"version": "", "sha256": ""}
    data: dict[str, str] = json.loads(FINGERPRINT.read_text())
    return data


def problem() -> str | None:
    """What is wrong with the recorded fingerprint, or None when it matches the chart."""
    old, version, digest = recorded(), chart_version(), chart_hash()
    if old["sha256"] == digest and old["version"] == version:
        return None
    if old["sha256"] != digest and old["version"] == version:
        return (
            f"the chart's {COVERED_TEXT} changed, but its version is still {version}: bump the chart "
            f"version (Chart.yaml `version`) and update the fingerprint (python scripts/chart_fingerprint.py)"
        )
    return (
        f"the chart's version is {version} but the fingerprint records {old['version'] or 'nothing'}: "
        f"update the fingerprint (python scripts/chart_fingerprint.py)"
    )


def numeric(version: str) -> tuple[int, ...]:
    release = re.split(r"[-+]", version, maxsplit=1)[0]  # no pre-release or build part
    return tuple(int(part) for part in re.findall(r"\d+", release)[:3])


def record() -> str | None:
    """Write the fingerprint; or say why not (the chart changed under the recorded version)."""
    old, version, digest = recorded(), chart_version(), chart_hash()
    if old["sha256"] != digest and old["version"] == version:
        return f"the chart changed but its version is still {version}: bump `version` in Chart.yaml first"
    if old["version"] and numeric(version) < numeric(old["version"]):
        return f"the chart version {version} is lower than the recorded {old['version']}"
    FINGERPRINT.write_text(json.dumps({"version": version, "sha256": digest}, indent=2) + "\n")
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the fingerprint is stale")
    args = parser.parse_args()
    complaint = problem() if args.check else record()
    if complaint is not None:
        print(f"chart_fingerprint: {complaint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
