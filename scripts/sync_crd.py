"""Generate the ApiToken CRD from the models (operator/apitoken_operator/api/) into crds/ and its copies.

crds/ is what `kubectl apply -f crds/` and the dev tools use. The Helm chart and the kustomize base keep
byte-for-byte copies because neither can reach crds/ itself: Helm packages only what is inside the
chart, and `kubectl apply -k` refuses files outside the kustomization's root (kustomize's
LoadRestrictionsRootOnly, which `kubectl apply -k` cannot relax). The tests fail when any file differs
from what the models generate.

    .venv/bin/python scripts/sync_crd.py           # regenerate crds/ and the copies
    .venv/bin/python scripts/sync_crd.py --check   # exit 1, naming the stale files, if any differs
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if (ROOT / "operator").is_dir():  # the models of this tree, even without an editable install
    sys.path.insert(0, str(ROOT / "operator"))

from apitoken_operator.api import crd, group  # noqa: E402

SOURCE = ROOT / "crds"
#: Directories holding a copy of every CRD in crds/ (and nothing else named *.yaml).
COPIES = (
    ROOT / "charts" / "dynatrace-apitoken-operator" / "files" / "crds",
    ROOT / "deploy" / "crds",
)
FILE_NAME = f"{group.CRD_NAME}.yaml"


def expected() -> dict[pathlib.Path, bytes]:
    """Every generated file's path and the content it must have."""
    content = crd.render().encode("utf-8")
    return {target / FILE_NAME: content for target in (SOURCE, *COPIES)}


def stale() -> list[str]:
    """The files that differ from the generated CRD, are missing, or are not generated at all."""
    wanted = expected()
    problems = [
        str(path.relative_to(ROOT))
        for path, content in wanted.items()
        if not path.is_file() or path.read_bytes() != content
    ]
    for target in (SOURCE, *COPIES):
        problems += [
            f"{path.relative_to(ROOT)} (not generated from the models)"
            for path in sorted(target.glob("*.yaml"))
            if path not in wanted
        ]
    return problems


def sync() -> list[str]:
    """Write every file; remove YAML files that are not generated. Returns what changed."""
    changed = stale()
    wanted = expected()
    for target in (SOURCE, *COPIES):
        target.mkdir(parents=True, exist_ok=True)
        for path in target.glob("*.yaml"):
            if path not in wanted:
                path.unlink()
    for path, content in wanted.items():
        if not path.is_file() or path.read_bytes() != content:
            path.write_bytes(content)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1 if any)")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for problem in problems:
            print(f"stale: {problem} (run python scripts/sync_crd.py)", file=sys.stderr)
        return 1 if problems else 0
    for path in sync():
        print(f"updated: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
