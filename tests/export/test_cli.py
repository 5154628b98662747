"""`apitoken-operator export` from the command line against the emulator: output, progress, errors, secrecy.

The end-to-end cases run the real console entry point in a subprocess; the many small cases call the
verb in-process through the same argument parser, with stdout and stderr captured.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from apitoken_emulator import EmulatorThread
from apitoken_operator import cli
from apitoken_operator.dynatrace.secrets import TOKEN_PATTERN, TokenSecret
from tests.export.helpers import assert_valid_manifest
from tests.fixtures.leaks import LeakSources

OTHER = "other@example.com"
TIMEOUT = 120


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    def documents(self) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.stdout) if d is not None]


@pytest.fixture
def environment() -> Iterator[EmulatorThread]:
    """An emulator with a few tokens of different shapes (and its admin token)."""
    with EmulatorThread(validate_responses=True) as running:
        now = running.clock()
        running.create_token("ci reader", ["metrics.read", "entities.read"])
        running.create_token("ci reader", ["metrics.read", "entities.read"])
        running.create_token("Überwachung", ["logs.read"], enabled=False)
        running.create_token("mine", ["settings.read"], owner=OTHER, personal_access_token=True)
        running.create_token("soon", ["metrics.ingest"], expiration_date=now + timedelta(days=7))
        running.create_token("gone", ["metrics.read"], expiration_date=now - timedelta(days=1))
        yield running
        assert running.contract_violations == []


@pytest.fixture
def token_file(tmp_path: Path, environment: EmulatorThread) -> Path:
    path = tmp_path / "token"
    path.write_text(f"  \n{environment.admin_token.reveal()}\n\n", encoding="utf-8")  # whitespace is stripped
    path.chmod(0o600)
    return path


def write_token(tmp_path: Path, token: TokenSecret, name: str = "other-token") -> Path:
    path = tmp_path / name
    path.write_text(token.reveal() + "\n", encoding="utf-8")
    return path


def run(*argv: str, leak_sources: LeakSources | None = None) -> Outcome:
    """The verb in-process, through the console script's parser."""
    arguments = ["export", *argv]
    args = cli.build_parser(arguments).parse_args(arguments)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = args.handler(args, stdout=stdout, stderr=stderr)
    outcome = Outcome(code, stdout.getvalue(), stderr.getvalue())
    assert_no_secret(outcome)
    if leak_sources is not None:
        leak_sources.add_text(f"export {' '.join(argv)}", outcome.stdout + outcome.stderr)
    return outcome


def run_process(*argv: str, env: dict[str, str] | None = None) -> Outcome:
    completed = subprocess.run(
        [sys.executable, "-m", "apitoken_operator", "export", *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **(env or {})},
        check=False,
    )
    outcome = Outcome(completed.returncode, completed.stdout, completed.stderr)
    assert_no_secret(outcome)
    return outcome


def assert_no_secret(outcome: Outcome) -> None:
    assert not TOKEN_PATTERN.search(outcome.stdout)
    assert not TOKEN_PATTERN.search(outcome.stderr)
    assert "Traceback" not in outcome.stderr


def assert_one_error_line(outcome: Outcome, code: int, *fragments: str) -> None:
    assert outcome.code == code, outcome.stderr
    assert outcome.stdout == ""
    lines = outcome.stderr.strip().splitlines()
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1, lines
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# --- end to end, in a subprocess -------------------------------------------------------------------


def test_stream_on_stdout_summary_on_stderr(
    environment: EmulatorThread, token_file: Path, leak_sources: LeakSources
) -> None:
    outcome = run_process("--url", environment.base_url, "--token-file", str(token_file))
    leak_sources.add_text("export subprocess", outcome.stdout + outcome.stderr)

    assert outcome.code == 0, outcome.stderr
    documents = outcome.documents()
    assert sorted(d["spec"]["name"] for d in documents) == sorted(
        ["Überwachung", "ci reader", "ci reader", "mine", "soon"]
    )
    for document in documents:
        assert_valid_manifest(document)
        assert "namespace" not in document["metadata"]
    assert outcome.stdout.startswith("---\n# Exported by `apitoken-operator export` from ")
    assert "secret is not included" in outcome.stdout
    assert f"reading tokens from {environment.base_url}/api/v2 as {environment.admin_token.token_id}" in (
        outcome.stderr
    )
    assert "read 7 tokens; exported 5 ApiToken manifests to stdout" in outcome.stderr
    assert "skipped 1 expired tokens (--include-expired exports them)" in outcome.stderr
    assert environment.admin_token.token_id in outcome.stderr  # said to be skipped, by id only


def test_large_environment_shows_progress(tmp_path: Path, leak_sources: LeakSources) -> None:
    with EmulatorThread() as running:
        for number in range(250):
            running.create_token(f"bulk {number}", ["metrics.read"])
        token = write_token(tmp_path, running.admin_token)
        running.counters.reset()
        outcome = run_process(
            "--url", running.base_url, "--token-file", str(token), "--page-size", "100", "--namespace", "ns"
        )
        assert running.counters.count("list") == 3
    leak_sources.add_text("export progress", outcome.stdout + outcome.stderr)
    assert outcome.code == 0, outcome.stderr
    assert len(outcome.documents()) == 250
    assert {d["metadata"]["namespace"] for d in outcome.documents()} == {"ns"}
    progress = [line for line in outcome.stderr.splitlines() if line.endswith("tokens...")]
    assert progress == ["read 100 tokens...", "read 200 tokens..."]
    assert "read 251 tokens; exported 250 ApiToken manifests" in outcome.stderr


def test_bad_token_is_one_clear_line_and_exit_1(environment: EmulatorThread, tmp_path: Path) -> None:
    made = environment.create_token("revoked", ["apiTokens.read"], enabled=False)
    outcome = run_process("--url", environment.base_url, "--token-file", str(write_token(tmp_path, made)))
    assert_one_error_line(outcome, 1, "401 Unauthorized", "disabled or expired")


def test_token_from_the_environment_variable(environment: EmulatorThread) -> None:
    outcome = run_process(
        "--url", environment.base_url + "/api/v2/", "--quiet",
        env={"DYNATRACE_API_TOKEN": environment.admin_token.reveal()},
    )  # fmt: skip
    assert outcome.code == 0, outcome.stderr
    assert outcome.stderr == ""
    assert len(outcome.documents()) == 5


# --- in-process ------------------------------------------------------------------------------------


def test_output_directory_holds_one_file_per_token(
    environment: EmulatorThread, token_file: Path, tmp_path: Path, leak_sources: LeakSources
) -> None:
    target = tmp_path / "out" / "apitokens"
    outcome = run(
        "--url", environment.base_url, "--token-file", str(token_file), "--output", str(target),
        "--namespace", "team-a", "--deletion-policy", "Delete", "--connection-secret", "dt-connection",
        leak_sources=leak_sources,
    )  # fmt: skip
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout == ""
    files = sorted(target.iterdir())
    assert len(files) == 5
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not TOKEN_PATTERN.search(text)
        (document,) = list(yaml.safe_load_all(text))
        assert path.name == f"{document['metadata']['name']}.yaml"
        assert document["metadata"]["namespace"] == "team-a"
        assert document["spec"]["deletionPolicy"] == "Delete"
        assert document["spec"]["connectionSecretRef"] == {"name": "dt-connection"}
        assert_valid_manifest(document)
    assert f"exported 5 ApiToken manifests to 5 files in {target}" in outcome.stderr


def test_include_expired_and_self(environment: EmulatorThread, token_file: Path) -> None:
    outcome = run(
        "--url", environment.base_url, "--token-file", str(token_file), "--include-expired", "--include-self"
    )
    assert outcome.code == 0, outcome.stderr
    names = sorted(d["spec"]["name"] for d in outcome.documents())
    assert names == sorted(
        ["emulator-admin", "gone", "mine", "soon", "Überwachung", "ci reader", "ci reader"]
    )
    assert "skipped" not in outcome.stderr


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--owner", OTHER], ["mine"]),
        (["--personal-access-token", "true"], ["mine"]),
        (["--personal-access-token", "false", "--scope", "logs.read"], ["Überwachung"]),
        (["--scope", "logs.read", "--scope", "settings.read"], ["mine", "Überwachung"]),
        (["--selector", 'owner("admin@example.com"), scope("metrics.ingest")'], ["soon"]),
        (["--selector", 'scope("logs.read")', "--personal-access-token", "false"], ["Überwachung"]),
        (["--owner", OTHER, "--selector", f'owner("{OTHER}")'], ["mine"]),
    ],
)
def test_selection_flags(
    environment: EmulatorThread, token_file: Path, flags: list[str], expected: list[str]
) -> None:
    outcome = run("--url", environment.base_url, "--token-file", str(token_file), *flags)
    assert outcome.code == 0, outcome.stderr
    assert sorted(d["spec"]["name"] for d in outcome.documents()) == sorted(expected)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--selector", "owner(nobody)"], "--selector: invalid apiTokenSelector at position 6"),
        (["--owner", "a", "--selector", 'owner("b")'], "--owner and the owner(...) of --selector differ"),
        (["--scope", "a", "--selector", 'scope("b")'], "--scope and the scope(...) of --selector differ"),
        (
            ["--personal-access-token", "true", "--selector", "personalAccessToken(false)"],
            "--personal-access-token and the personalAccessToken(...)",
        ),
    ],
)
def test_contradicting_selection_is_a_usage_error(
    environment: EmulatorThread, token_file: Path, flags: list[str], fragment: str
) -> None:
    outcome = run("--url", environment.base_url, "--token-file", str(token_file), *flags)
    assert_one_error_line(outcome, 2, fragment)


def test_missing_scope_is_named(environment: EmulatorThread, tmp_path: Path) -> None:
    reader = environment.create_token("metrics only", ["metrics.read"])
    outcome = run("--url", environment.base_url, "--token-file", str(write_token(tmp_path, reader)))
    assert_one_error_line(outcome, 1, "lacks the apiTokens.read scope", "403")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.com", "must start with https://"),
        ("abc12345.live.dynatrace.com", "has no scheme"),
        ("https://abc.apps.dynatrace.com", "platform address"),
        ("https://abc.live.dynatrace.com/api/v2/apiTokens", "points into an API endpoint"),
    ],
)
def test_bad_url_is_a_usage_error(token_file: Path, url: str, fragment: str) -> None:
    assert_one_error_line(run("--url", url, "--token-file", str(token_file)), 2, fragment)


def test_unreachable_environment(token_file: Path) -> None:
    outcome = run("--url", "http://127.0.0.1:1", "--token-file", str(token_file), "--max-attempts", "1")
    assert_one_error_line(outcome, 1, "cannot reach http://127.0.0.1:1/api/v2")


def test_token_problems_are_usage_errors(
    environment: EmulatorThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DYNATRACE_API_TOKEN", raising=False)
    url = environment.base_url
    assert_one_error_line(run("--url", url), 2, "give --token-file FILE or set DYNATRACE_API_TOKEN")
    missing = tmp_path / "missing"
    assert_one_error_line(run("--url", url, "--token-file", str(missing)), 2, "cannot read the token file")
    empty = tmp_path / "empty"
    empty.write_text("\n \n")
    assert_one_error_line(run("--url", url, "--token-file", str(empty)), 2, "holds no token")
    two = tmp_path / "two"
    secret = environment.admin_token.reveal()
    two.write_text(f"{secret}\n{secret}\n")
    assert_one_error_line(run("--url", url, "--token-file", str(two)), 2, "one token on one line")


def test_output_that_is_a_file_is_a_usage_error(environment: EmulatorThread, token_file: Path) -> None:
    outcome = run("--url", environment.base_url, "--token-file", str(token_file), "--output", str(token_file))
    assert_one_error_line(outcome, 2, "is not a directory")


def test_nothing_matches_is_an_empty_stream(environment: EmulatorThread, token_file: Path) -> None:
    outcome = run("--url", environment.base_url, "--token-file", str(token_file), "--owner", "nobody")
    assert outcome.code == 0
    assert outcome.stdout == ""
    assert "exported 0 ApiToken manifests" in outcome.stderr


@pytest.mark.parametrize(
    "flags",
    [
        ["--page-size", "99"],
        ["--page-size", "10001"],
        ["--namespace", "Team_A"],
        ["--deletion-policy", "Keep"],
        ["--personal-access-token", "maybe"],
        ["--connection-secret", "Not Valid"],
    ],
)
def test_invalid_flags_exit_2(flags: list[str]) -> None:
    arguments = ["export", "--url", "https://abc.live.dynatrace.com", *flags]
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser(arguments).parse_args(arguments)
    assert exit_info.value.code == 2


def test_exporting_twice_gives_the_same_bytes(environment: EmulatorThread, token_file: Path) -> None:
    first = run("--url", environment.base_url, "--token-file", str(token_file), "--namespace", "ns")
    second = run("--url", environment.base_url, "--token-file", str(token_file), "--namespace", "ns")
    assert first.code == second.code == 0
    assert first.stdout == second.stdout != ""


def test_token_from_stdin(environment: EmulatorThread, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(environment.admin_token.reveal() + "\n"))
    outcome = run("--url", environment.base_url, "--token-file", "-", "--quiet")
    assert outcome.code == 0, outcome.stderr
    assert len(outcome.documents()) == 5


def test_tokens_that_cannot_be_declared_are_warned_about(
    environment: EmulatorThread, token_file: Path
) -> None:
    padded = environment.create_token(" padded name", ["metrics.read"])
    platform = environment.create_token("platform", ["storage:buckets:read"])
    outcome = run("--url", environment.base_url, "--token-file", str(token_file))
    assert outcome.code == 0, outcome.stderr
    assert len(outcome.documents()) == 5
    warnings = [line for line in outcome.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 2
    assert any(padded.token_id in line and "whitespace" in line for line in warnings)
    assert any(platform.token_id in line and "storage:buckets:read" in line for line in warnings)
