#!/usr/bin/env bash
# The project's test command: lint, type-check, then the whole test suite on a local control plane
# (built from Go modules on first use, cached under ~/.cache/apitoken-operator) and the emulator.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k emulator`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"; .venv/bin/ruff check operator dev tests benchmarks
.venv/bin/ruff format --check operator dev tests benchmarks
echo "== mypy"; .venv/bin/mypy
echo "== pytest"
# Marks every process this run starts, so the leftover check below looks only at ours.
APITOKEN_RUN_ID=$(date +%s%N)-$$
export APITOKEN_RUN_ID
status=0
.venv/bin/pytest "$@" || status=$?
echo "== leftover processes"
.venv/bin/python scripts/check_no_leftovers.py || status=1
exit $status
