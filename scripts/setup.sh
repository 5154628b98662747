#!/usr/bin/env bash
# Create .venv with the pinned dependencies (constraints.txt) and the project installed editable.
# Idempotent and quick when nothing changed; everything a fresh machine needs comes from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
