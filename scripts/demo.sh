#!/usr/bin/env bash
# The README's first command: set up .venv (pinned, from constraints.txt), then start a local control
# plane (built from Go modules on first use, then cached), the Tokens API emulator and the operator,
# reconcile deploy/examples/apitoken.yaml, show the result and stop everything.
# Arguments go to `apitoken-operator demo`, e.g. `bash scripts/demo.sh --keep`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/apitoken-operator demo "$@"
