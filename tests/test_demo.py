"""`apitoken-operator demo`, the README's first command, end to end: it reconciles the example, shows the
result without ever printing a secret, and leaves nothing running, whether it ends by itself or, with
`--keep`, by Ctrl-C.

Each run starts its own control plane (about 5 s once the binaries are cached). The demo's temporary folder
is put under the test's own (TMPDIR), so every process it starts names that folder on its command line
(etcd's data dir, the API server's certificates, the operator's kubeconfig): that is how the tests find
anything left running without mistaking another test session's control plane for the demo's.
"""

from __future__ import annotations

import base64
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from apitoken_devenv import binaries
from apitoken_operator.dynatrace.secrets import TOKEN_PATTERN

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(900)]

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEMO = [sys.executable, "-m", "apitoken_operator", "demo"]
RUN_TIMEOUT = 180
JSONPATH = ("-o", "jsonpath={.data.apiToken}")
KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"
TABLE_ROW = re.compile(
    r"^ingest-metrics\s+ingest-metrics\s+(?P<id>dt0c01\.[A-Z0-9]{24})\s+true\s+True\s+Ready\b", re.MULTILINE
)


@pytest.fixture(scope="module", autouse=True)
def _binaries_built() -> None:
    """Build the control plane first if needed (minutes, once), so that the demo's own timing is warm."""
    binaries.ensure_control_plane()


def demo_env(tmp_path: pathlib.Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["TMPDIR"] = str(tmp_path)
    return env


def processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line contains `text` (zombies and this test's own excluded)."""
    found = []
    for entry in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in command and state != "Z" and int(entry.name) != os.getpid():
            found.append(f"{entry.name}: {command[:200]}")
    return found


def assert_nothing_left(tmp_path: pathlib.Path) -> None:
    deadline = time.monotonic() + 5  # the kernel may take a moment to reap a killed process group
    while (left := processes_mentioning(str(tmp_path))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], "the demo left processes running:\n" + "\n".join(left)


def stored_token(kubeconfig: str, secret: str) -> str:
    """The value under the key apiToken of a Secret in the demo namespace, read as a user would."""
    encoded = subprocess.run(
        [str(KUBECTL), f"--kubeconfig={kubeconfig}", "-n", "demo", "get", "secret", secret, *JSONPATH],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return base64.b64decode(encoded).decode()


def assert_no_secret(output: str, *secrets: str) -> None:
    assert TOKEN_PATTERN.search(output) is None, "a full token appears in the demo's output"
    for secret in secrets:
        assert secret not in output


def test_demo_reconciles_the_example_shows_the_result_and_stops_everything(tmp_path: pathlib.Path) -> None:
    result = subprocess.run(
        DEMO,
        cwd=ROOT,
        env=demo_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output

    assert "$ kubectl -n demo apply -f deploy/examples/apitoken.yaml" in output
    assert "apitoken.dynatrace.apitokens.io/ingest-metrics created" in output
    row = TABLE_ROW.search(output)  # kubectl get apitokens -o wide: the token's name, id, enabled, Ready
    assert row, output
    token_id = row["id"]
    assert f"id: {token_id}" in output  # the status
    assert re.search(r"^  apiToken: 96 bytes$", output, re.MULTILINE), output  # keys and sizes only
    assert "accepted: the stored secret is a live token" in output  # the lookup
    assert f"id:      {token_id} (= status.id)" in output
    assert "owner:   admin@example.com" in output
    assert "scopes:  logs.ingest, metrics.ingest" in output
    assert re.search(r"Normal\s+Created\s+apitoken/ingest-metrics", output), output  # the Event
    assert output.rstrip().endswith("done: the operator, the emulator and the control plane are stopped")
    assert_no_secret(output)

    assert_nothing_left(tmp_path)
    assert list(tmp_path.glob("apitoken-demo-*")) == []  # its temporary folder is gone after a success


def test_demo_keep_leaves_a_usable_setup_until_ctrl_c(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "demo.out"
    with log.open("w") as sink:
        demo = subprocess.Popen(
            [*DEMO, "--keep"],
            cwd=ROOT,
            env=demo_env(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while "until you press Ctrl-C" not in log.read_text():
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        output = log.read_text()
        # The printed instructions work: the kubeconfig export reaches the cluster the operator serves.
        export = re.search(r"^  export KUBECONFIG=(.+)$", output, re.MULTILINE)
        assert export, output
        kubeconfig = shlex.split(export[1])[0]
        secret = stored_token(kubeconfig, "ingest-metrics-token")
        admin = stored_token(kubeconfig, "dynatrace-connection")
        assert TOKEN_PATTERN.fullmatch(secret) and TOKEN_PATTERN.fullmatch(admin)

        demo.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert demo.wait(timeout=60) == 0, log.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    output = log.read_text()
    assert "accepted: the stored secret is a live token" in output
    assert output.rstrip().endswith("done: the operator, the emulator and the control plane are stopped")
    # Neither the token's secret nor the emulator's admin token was printed, not even in part.
    assert_no_secret(output, secret, secret.rsplit(".", 1)[1], admin, admin.rsplit(".", 1)[1])
    assert_nothing_left(tmp_path)


def test_demo_script_sets_up_the_venv_and_runs_the_verb() -> None:
    """`bash scripts/demo.sh ARGS` is `apitoken-operator demo ARGS` once .venv is set up."""
    result = subprocess.run(
        ["bash", "scripts/demo.sh", "--help"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "usage: apitoken-operator demo" in result.stdout
    assert "--keep" in result.stdout and "--workdir" in result.stdout
