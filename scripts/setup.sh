#!/usr/bin/env bash
# Create .venv with the pinned dependencies (constraints.txt) and both distributions installed editable:
# the operator (pyproject.toml) and the developer tools, emulator and demo (dev/pyproject.toml).
# Idempotent and quick when nothing changed; everything a fresh machine needs comes from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml dev/pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test]' -e ./dev
  rm -f .venv/.installed-*
  touch "$stamp"
fi
