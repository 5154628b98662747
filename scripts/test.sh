#!/usr/bin/env bash
# The project's test command: lint, type-check, then the whole test suite on a local control plane
# (built from Go modules on first use, cached under ~/.cache/apitoken-operator) and the emulator.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k emulator` or `--runslow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"; .venv/bin/ruff check operator tests benchmarks
.venv/bin/ruff format --check operator tests benchmarks
echo "== mypy"; .venv/bin/mypy
echo "== pytest"
status=0
.venv/bin/pytest "$@" || status=$?
echo "== leftover processes"
.venv/bin/python scripts/check_no_leftovers.py || status=1
exit $status
