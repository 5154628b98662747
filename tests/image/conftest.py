"""The image's venv, installed once per session by scripts/image-install.sh, the Dockerfile's one step."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.image.dockerfile import Dockerfile
from tests.image.helpers import INSTALL_SCRIPT, Installed, choose_sandbox, load_dockerfile, others_can_run

INSTALL_TIMEOUT = 300
#: Interpreters like the image's (/usr/local/bin/python3.11 in python:3.11-slim), tried in order; one
#: that other users may run lets the tests drop to the image's UID. Override with APITOKEN_IMAGE_PYTHON.
CANDIDATES = ("/usr/local/bin/python3.11", "/usr/bin/python3.11")


def _interpreter() -> str:
    chosen = os.environ.get("APITOKEN_IMAGE_PYTHON")
    if chosen:
        return chosen
    for candidate in CANDIDATES:
        path = pathlib.Path(candidate)
        if path.exists() and others_can_run(path) and _usable(candidate):
            return candidate
    return getattr(sys, "_base_executable", sys.executable)


def _usable(python: str) -> bool:
    check = "import sys, ensurepip, venv, tomllib; sys.exit(sys.version_info[:2] != (3, 11))"
    return subprocess.run([python, "-c", check], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return load_dockerfile()


@pytest.fixture(scope="session")
def installed() -> Iterator[Installed]:
    base = pathlib.Path(tempfile.mkdtemp(prefix="apitoken-image-"))
    base.chmod(0o755)  # the image's user must reach the venv, as in the image
    prefix = base / "venv"
    python = _interpreter()
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}}
    env["PYTHON"] = python
    started = time.monotonic()
    try:
        result = subprocess.run(
            ["bash", str(INSTALL_SCRIPT), str(prefix)],
            env=env,
            cwd=base,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        seconds = time.monotonic() - started
        output = result.stdout + result.stderr
        if result.returncode != 0:
            pytest.fail(f"scripts/image-install.sh failed ({result.returncode}):\n{output[-6000:]}")
        # Read-only from here on, like the root-owned venv in the image (a non-root user cannot write).
        subprocess.run(["chmod", "-R", "a-w", str(prefix)], check=True)
        yield Installed(
            prefix=prefix,
            base=base,
            python=python,
            seconds=seconds,
            output=output,
            sandbox=choose_sandbox(prefix / "bin" / "python", base),
        )
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)
