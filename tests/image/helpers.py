"""Running the installed image venv the way the container runs it, without a container engine.

The image's conditions are a read-only root filesystem, one writable directory (/tmp, an emptyDir in
the chart), UID/GID 65532, and the Dockerfile's ENV. Here, as root, a private mount namespace
(`unshare --mount`) remounts every mount read-only (bind remounts: the host's mounts are untouched) and
mounts a fresh tmpfs on one directory, then `setpriv` drops to 65532:65532 with no_new_privs before the
command runs. Without root (or without unshare/setpriv) commands run directly; the tests then still
compare the venv's files before and after, so a write would show.
"""

from __future__ import annotations

import functools
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from tests.image.dockerfile import Dockerfile, Stage, parse, substitute

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
INSTALL_SCRIPT = ROOT / "scripts" / "image-install.sh"
UID = GID = 65532
#: the base image's PATH (python:3.11-slim), which the Dockerfile's ENV PATH extends
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Remount everything read-only except the kernel's own filesystems, put a tmpfs on $1, run the rest.
_SANDBOX_SCRIPT = r"""
set -eu
writable=$1; shift
while read -r _ _ _ _ mountpoint _; do
  case $mountpoint in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
  mount -o remount,bind,ro "$mountpoint" 2>/dev/null || true
done < /proc/self/mountinfo
mount -t tmpfs -o mode=1777,size=64m tmpfs "$writable"
exec "$@"
"""


def load_dockerfile() -> Dockerfile:
    return parse(DOCKERFILE.read_text())


def image_prefix(dockerfile: Dockerfile) -> str:
    """The venv path: the last argument of the build stage's one RUN (scripts/image-install.sh PREFIX)."""
    build = build_stage(dockerfile)
    (run,) = build.all("RUN")
    assert run.exec_form is not None, "the build stage's RUN must be in exec form"
    return run.exec_form[-1]


def build_stage(dockerfile: Dockerfile) -> Stage:
    sources = {i.flags["from"] for i in dockerfile.final.all("COPY") if "from" in i.flags}
    assert len(sources) == 1, f"the final stage copies from exactly one stage, not {sources}"
    return dockerfile.stage(sources.pop())


def image_env(dockerfile: Dockerfile, *, prefix: pathlib.Path, writable: pathlib.Path) -> dict[str, str]:
    """The final stage's ENV, with the venv at `prefix` and `writable` standing in for /tmp."""
    image_venv = image_prefix(dockerfile)
    env = {"PATH": BASE_PATH, "LANG": "C.UTF-8"}  # what the base image sets
    for instruction in dockerfile.final.all("ENV"):
        for key, value in instruction.pairs().items():
            env[key] = substitute(value, env)
    for key, value in env.items():
        moved = value.replace(image_venv, str(prefix))
        env[key] = str(writable) if moved == "/tmp" else moved
    env["TMPDIR"] = str(writable)  # in the image /tmp is the default temporary directory
    return env


@dataclass(frozen=True)
class Sandbox:
    read_only: bool  # a private mount namespace with every mount read-only but the writable tmpfs
    user: tuple[int, int] | None  # the UID/GID commands run as, if they can be dropped to

    def wrap(self, argv: Sequence[str], *, writable: pathlib.Path) -> list[str]:
        command = [str(a) for a in argv]
        if self.user is not None:
            uid, gid = self.user
            drop = [f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs"]
            command = ["setpriv", *drop, "--", *command]
        if self.read_only:
            namespace = ["unshare", "--mount", "--propagation", "private"]
            command = [*namespace, "sh", "-c", _SANDBOX_SCRIPT, "sandbox", str(writable), *command]
        return command

    def describe(self) -> str:
        where = "read-only root, one tmpfs" if self.read_only else "no mount namespace (not root?)"
        who = f"as {self.user[0]}:{self.user[1]}" if self.user else f"as uid {os.geteuid()}"
        return f"{where}, {who}"


@dataclass(frozen=True)
class Installed:
    prefix: pathlib.Path
    base: pathlib.Path  # a 0755 scratch folder holding the prefix and writable dirs
    python: str  # the interpreter the venv was made from
    seconds: float
    output: str
    sandbox: Sandbox


def writable_dir(base: pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(tempfile.mkdtemp(prefix="writable-", dir=base))
    path.chmod(0o1777)
    return path


def run(
    sandbox: Sandbox,
    argv: Sequence[str],
    *,
    env: dict[str, str],
    writable: pathlib.Path,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sandbox.wrap(argv, writable=writable),
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@functools.cache
def mount_namespace_works() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    with tempfile.TemporaryDirectory() as scratch:
        writable = pathlib.Path(scratch, "w")
        writable.mkdir()
        check = f'touch "{scratch}/ro" 2>/dev/null && exit 3; touch "{writable}/rw"'
        probe = Sandbox(read_only=True, user=None).wrap(["sh", "-c", check], writable=writable)
        result = subprocess.run(probe, capture_output=True, timeout=30, check=False)
        return result.returncode == 0


def choose_sandbox(python: pathlib.Path, base: pathlib.Path) -> Sandbox:
    """The strictest sandbox this machine allows for running `python` (a venv interpreter)."""
    read_only = mount_namespace_works()
    user = None
    if os.geteuid() == 0 and shutil.which("setpriv"):
        candidate = Sandbox(read_only=read_only, user=(UID, GID))
        writable = writable_dir(base)
        probe = run(candidate, [python, "-c", "pass"], env={"PATH": BASE_PATH}, writable=writable, timeout=30)
        if probe.returncode == 0:
            user = (UID, GID)
    return Sandbox(read_only=read_only, user=user)


def others_can_run(path: pathlib.Path) -> bool:
    """Whether a user other than the owner could run `path` (every parent searchable, the file readable)."""
    resolved = path.resolve()
    for parent in resolved.parents:
        if not parent.stat().st_mode & 0o001:
            return False
    return bool(resolved.stat().st_mode & 0o005 == 0o005)


def snapshot(root: pathlib.Path) -> dict[str, tuple[int, int, int]]:
    """Every path under root with (mode, size, mtime_ns), to prove nothing was written."""
    found = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = pathlib.Path(directory, name)
            info = path.lstat()
            found[str(path.relative_to(root))] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return found
