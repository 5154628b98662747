"""`--profile`: a py-spy sampling profile of each operator process, and a summary people can read.

py-spy attaches to the running operator (`--nonblocking`: it never pauses it) and samples only threads on
CPU (no `--idle`), 100 times a second, until the operator exits. It writes the collapsed stacks
(`--format raw`: one line per distinct stack, `frame;frame;... count`, the input of flamegraph.pl and
speedscope), and `summarize` turns them into the functions that took the most samples, by their own
time and by the time spent in them and what they called. The profiled run's figures are not comparable
with an unprofiled run's (py-spy reads the operator's memory 100 times a second); profile to find where
the time goes, measure without it.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
from collections import Counter

from apitoken_devenv.controlplane import die_with_parent

SAMPLE_RATE = 100
TOP = 40


def py_spy() -> str:
    """The py-spy executable next to this interpreter, or on PATH (the `bench` extra installs it)."""
    beside = pathlib.Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.is_file() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("--profile needs py-spy: pip install -e '.[bench]' (or pip install py-spy)")
    return found


def attach(pid: int, output: pathlib.Path, log: pathlib.Path) -> subprocess.Popen[bytes]:
    """Start sampling `pid` into `output` (collapsed stacks); py-spy stops when the process exits."""
    command = [
        py_spy(),
        "record",
        "--pid",
        str(pid),
        "--nonblocking",
        "--rate",
        str(SAMPLE_RATE),
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    with log.open("ab") as sink:
        return subprocess.Popen(
            command,
            stdout=sink,
            stderr=sink,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only a prctl, no locks taken
        )


def _function(frame: str) -> str:
    """`reconcile (apitoken_operator/controller/reconciler.py:120)` -> `reconcile (…/reconciler.py)`:
    one entry per function, whichever line was running."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0] or where.rstrip(")")
    for marker in ("site-packages/", "apitoken_operator/", "lib/python"):
        if marker in path:
            path = path[path.index(marker) :]
            break
    return f"{name} ({path})" if path else name


def summarize(collapsed: pathlib.Path, *, top: int = TOP) -> str:
    """The `top` functions by own samples and by inclusive samples (each function once per stack)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";")[1:]]  # [0] is the process/thread
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for function in set(frames):
            inclusive[function] += count
        leaf_path = frames[-1].partition(" (")[2].rstrip(")")
        modules[leaf_path.split("/")[1] if leaf_path.startswith("site-packages/") else leaf_path] += count

    def table(title: str, counter: Counter[str], limit: int) -> list[str]:
        rows = [f"{title} ({total} samples at {SAMPLE_RATE}/s = {total / SAMPLE_RATE:.1f} s on CPU)"]
        rows += [f"  {n / total:6.1%}  {n:6d}  {name}" for name, n in counter.most_common(limit)]
        return rows

    if total == 0:
        return f"{collapsed.name}: no samples\n"
    lines = [
        *table("own time", own, top),
        "",
        *table("inclusive time", inclusive, top),
        "",
        *table("own time by package or file", modules, 20),
    ]
    return "\n".join(lines) + "\n"
