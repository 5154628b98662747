"""Fail if any process runs a binary from the control-plane cache: the tests must stop what they start."""

import pathlib
import sys

from apitoken_operator.devenv.binaries import cache_root

root = str(cache_root())
leftovers = []
for exe in pathlib.Path("/proc").glob("[0-9]*/exe"):
    try:
        target = str(exe.readlink())
    except OSError:
        continue
    if target.startswith(root):
        leftovers.append(f"{exe.parent.name}: {target}")
if leftovers:
    print("control-plane processes left running:\n" + "\n".join(leftovers))
    sys.exit(1)
print("none")
