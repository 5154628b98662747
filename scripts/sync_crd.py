"""Copy the CRDs from crds/ (the one source) to where the Helm chart and the kustomize base need them.

Neither can reach crds/ itself: Helm packages only what is inside the chart, and `kubectl apply -k`
refuses files outside the kustomization's root (kustomize's LoadRestrictionsRootOnly, which
`kubectl apply -k` cannot relax). So both keep a byte-for-byte copy, and the tests fail when a copy
differs from crds/.

    python scripts/sync_crd.py           # rewrite the copies
    python scripts/sync_crd.py --check   # exit 1, naming the stale copies, if any differs
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / "crds"
#: Directories holding a copy of every CRD in crds/ (and nothing else named *.yaml).
COPIES = (
    ROOT / "charts" / "dynatrace-apitoken-operator" / "files" / "crds",
    ROOT / "deploy" / "crds",
)


def expected() -> dict[pathlib.Path, bytes]:
    """Every copy's path and the content it must have."""
    sources = sorted(SOURCE.glob("*.yaml"))
    return {target / source.name: source.read_bytes() for target in COPIES for source in sources}


def stale() -> list[str]:
    """The copies that differ from crds/, are missing, or have no source any more."""
    wanted = expected()
    problems = [
        str(path.relative_to(ROOT))
        for path, content in wanted.items()
        if not path.is_file() or path.read_bytes() != content
    ]
    for target in COPIES:
        problems += [
            f"{path.relative_to(ROOT)} (no source in crds/)"
            for path in sorted(target.glob("*.yaml"))
            if path not in wanted
        ]
    return problems


def sync() -> list[str]:
    """Write every copy; remove copies whose source is gone. Returns what changed."""
    changed = stale()
    wanted = expected()
    for target in COPIES:
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
    parser.add_argument("--check", action="store_true", help="only report stale copies (exit 1 if any)")
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
