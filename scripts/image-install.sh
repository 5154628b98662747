#!/usr/bin/env bash
# The one way the operator is installed for its container image:
#
#     bash scripts/image-install.sh PREFIX        # e.g. /opt/venv
#
# The Dockerfile's build stage runs exactly this line, and tests/image/test_install_script.py runs the
# same script into a temporary PREFIX and checks the result, so the image installs what the tests saw.
#
# What it does, from the repository this script sits in:
#   1. stages the inputs the image is built from (pyproject.toml, README.md, constraints.txt,
#      operator/apitoken_operator; the same files the Dockerfile copies), so the build never writes
#      into the source tree and stray files (__pycache__, *.egg-info) never reach the image;
#   2. creates a venv at PREFIX with the interpreter $PYTHON (default: python3);
#   3. installs the runtime dependencies only ([project].dependencies, not the `test` extra), pinned by
#      constraints.txt, from wheels only (no compiler is needed, nor ever present in the image);
#   4. builds the project's wheel with its [build-system].requires (constrained by constraints.txt too)
#      and installs it without dependencies, non-editable: the operator only (the emulator and the dev
#      tools are another distribution, dev/, which is neither staged nor installed);
#   5. removes the build backend, checks the dependency tree, removes pip itself;
#   6. byte-compiles everything with hash-based pycs, which stay valid whatever the files' mtimes, so
#      nothing needs writing at run time (the image also sets PYTHONDONTWRITEBYTECODE=1).
#
# PREFIX must not exist yet, or be empty: the venv's scripts name PREFIX in their first line, so the
# image copies the venv to the same path it was built at.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 PREFIX" >&2
  exit 2
fi
prefix=$1
case $prefix in
  /*) ;;
  *) echo "image-install: PREFIX must be an absolute path, got '$prefix'" >&2; exit 2 ;;
esac
if [ -e "$prefix" ] && [ -n "$(ls -A "$prefix")" ]; then
  echo "image-install: $prefix exists and is not empty" >&2
  exit 2
fi

source_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== image-install: staging sources from $source_root"
mkdir -p "$work/src/operator"
cp "$source_root/pyproject.toml" "$source_root/README.md" "$source_root/constraints.txt" "$work/src/"
cp -R "$source_root/operator/apitoken_operator" "$work/src/operator/"
find "$work/src" -depth \( -name __pycache__ -o -name '*.py[co]' \) -exec rm -rf {} +
constraints=$work/src/constraints.txt

# [project].dependencies and [build-system].requires, one requirement a line.
"$python" - "$work/src/pyproject.toml" "$work" <<'EOF'
import pathlib
import sys
import tomllib

pyproject = tomllib.loads(pathlib.Path(sys.argv[1]).read_text())
work = pathlib.Path(sys.argv[2])
(work / "runtime.txt").write_text("\n".join(pyproject["project"]["dependencies"]) + "\n")
(work / "build.txt").write_text("\n".join(pyproject["build-system"]["requires"]) + "\n")
EOF

echo "== image-install: venv at $prefix ($("$python" --version))"
"$python" -m venv "$prefix"
pip=("$prefix/bin/python" -m pip)

echo "== image-install: runtime dependencies"
"${pip[@]}" install --quiet --no-compile --only-binary=:all: -c "$constraints" -r "$work/runtime.txt"

echo "== image-install: the project"
"${pip[@]}" install --quiet --no-compile --only-binary=:all: -c "$constraints" -r "$work/build.txt"
"${pip[@]}" wheel --quiet --no-deps --no-build-isolation --wheel-dir "$work/dist" "$work/src"
"${pip[@]}" install --quiet --no-compile --no-deps --no-index "$work/dist"/*.whl

echo "== image-install: removing build and install tools"
"${pip[@]}" uninstall --quiet --quiet --yes setuptools wheel  # wheel: only if setuptools pulled it in
"${pip[@]}" check
"${pip[@]}" uninstall --quiet --yes pip

echo "== image-install: byte-compiling"
"$prefix/bin/python" -m compileall -q -f -j 0 --invalidation-mode unchecked-hash "$prefix/lib"
echo "== image-install: done"
