"""Fail if a process started by this test run still runs a binary from the control-plane cache.

scripts/test.sh exports a fresh APITOKEN_RUN_ID; every process the run starts inherits it, so
processes of other runs on the same machine (another developer's tests) are not mistaken for ours.
"""

import os
import pathlib
import sys

from apitoken_devenv.binaries import cache_root

root = str(cache_root())
run_id = os.environ.get("APITOKEN_RUN_ID", "")
marker = f"APITOKEN_RUN_ID={run_id}".encode()
leftovers = []
for proc in pathlib.Path("/proc").glob("[0-9]*"):
    try:
        target = str((proc / "exe").readlink())
        environment = (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        continue
    if target.startswith(root) and (not run_id or marker in environment):
        leftovers.append(f"{proc.name}: {target}")
if leftovers:
    print("control-plane processes left running:\n" + "\n".join(leftovers))
    sys.exit(1)
print("none")
