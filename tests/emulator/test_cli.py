"""`apitoken-operator emulator` in a subprocess: URL on stdout, admin token file, flags, restart, errors."""

from __future__ import annotations

import os
import re
import select
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from apitoken_operator.dynatrace.secrets import TOKEN_PATTERN, contains_secret
from tests.emulator.helpers import API

STARTUP_SECONDS = 30


def _command(admin_file: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "apitoken_operator",
        "emulator",
        "--port",
        "0",
        "--admin-token-file",
        str(admin_file),
        *extra,
    ]


@contextmanager
def running(admin_file: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start the CLI, yield its base URL, stop it with SIGTERM and check it exits 0 without leaking."""
    process = subprocess.Popen(
        _command(admin_file, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], STARTUP_SECONDS)
        assert ready, "the emulator printed nothing in time"
        line = process.stdout.readline()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+\n", line), line
        yield line.strip()
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=STARTUP_SECONDS)
    assert process.returncode == 0, stderr
    assert stdout == ""  # the URL line was the only output
    assert not contains_secret(stderr)


def test_prints_url_and_writes_a_private_admin_token(tmp_path: Path) -> None:
    admin_file = tmp_path / "admin-token"
    with running(admin_file, "--log-level", "DEBUG") as url:
        assert stat.S_IMODE(admin_file.stat().st_mode) == 0o600
        content = admin_file.read_text()
        assert content.endswith("\n")
        assert content.count("\n") == 1
        token = content.strip()
        assert TOKEN_PATTERN.fullmatch(token)
        auth = {"Authorization": f"Api-Token {token}"}
        created = httpx.post(f"{url}{API}", json={"name": "cli", "scopes": ["metrics.read"]}, headers=auth)
        assert created.status_code == 201
        assert httpx.get(f"{url}/_emulator/health").json()["tokens"] == 2


def test_restart_with_state_file_keeps_tokens_and_admin_token(tmp_path: Path) -> None:
    admin_file, state = tmp_path / "admin-token", tmp_path / "state.json"
    with running(admin_file, "--state-file", str(state)) as url:
        token = admin_file.read_text().strip()
        auth = {"Authorization": f"Api-Token {token}"}
        created = httpx.post(
            f"{url}{API}", json={"name": "kept", "scopes": ["metrics.read"]}, headers=auth
        ).json()
    with running(admin_file, "--state-file", str(state)) as url:
        assert admin_file.read_text().strip() == token
        kept = httpx.get(f"{url}{API}/{created['id']}", headers=auth)
        assert kept.status_code == 200
        assert kept.json()["name"] == "kept"
        assert httpx.get(f"{url}/_emulator/health").json()["tokens"] == 2


def test_fault_flags_and_validation_env(tmp_path: Path) -> None:
    admin_file = tmp_path / "admin-token"
    flags = ("--rate-limit-ratio", "1", "--fault-operations", "list", "--retry-after", "7")
    with running(admin_file, *flags, env={"APITOKEN_EMULATOR_VALIDATE": "1"}) as url:
        auth = {"Authorization": f"Api-Token {admin_file.read_text().strip()}"}
        throttled = httpx.get(f"{url}{API}", headers=auth)
        assert throttled.status_code == 429
        assert throttled.headers["Retry-After"] == "7"
        assert (
            httpx.post(
                f"{url}{API}", json={"name": "n", "scopes": ["metrics.read"]}, headers=auth
            ).status_code
            == 201
        )
        violations = httpx.get(f"{url}/_emulator/contract-violations").json()
        assert violations == {"enabled": True, "violations": []}
        assert httpx.get(f"{url}/_emulator/counters").json() == {"list": {"429": 1}, "create": {"201": 1}}


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        (lambda path: path.write_text("{torn"), ("--state-file", "{state}"), "refusing to load"),
        (lambda path: None, ("--rate-limit-ratio", "2"), "rate_limit_ratio must be between 0 and 1"),
        (lambda path: None, ("--fault-operations", "list,nope"), "unknown operation"),
    ],
)
def test_bad_start_exits_2_with_a_message(
    tmp_path: Path, setup: object, extra: tuple[str, ...], message: str
) -> None:
    state = tmp_path / "state.json"
    assert callable(setup)
    setup(state)
    arguments = [item.format(state=state) for item in extra]
    result = subprocess.run(
        _command(tmp_path / "admin-token", *arguments),
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""
