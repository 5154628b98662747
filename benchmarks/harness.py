"""What the scenarios stand on: the emulator and operator processes, Kubernetes clients, a watch that
timestamps Ready objects, the kube-apiserver's request counters, RSS readings and the machine's facts.

Every process started here runs in its own session (so Ctrl-C in the terminal reaches only the
benchmark, which then stops them in order) and dies with the benchmark if it is killed
(PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import pathlib
import platform
import re
import select
import subprocess
import sys
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import kubernetes
import urllib3
import yaml
from kubernetes.client import ApiException

from apitoken_devenv.controlplane import ControlPlane, die_with_parent, free_port, stop_process_group
from apitoken_devenv.paths import SOURCE_ROOT
from apitoken_operator.dynatrace.dates import parse_date
from apitoken_operator.metrics import NAMESPACE as METRICS_NAMESPACE
from benchmarks import profiling

GROUP, VERSION, PLURAL = "dynatrace.apitokens.io", "v1alpha1", "apitokens"
CONNECTION = "dynatrace-connection"
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
READ_VERBS = frozenset({"GET", "LIST"})  # WATCH is counted when a watch ends, so it is left out
OPERATOR_STOP_TIMEOUT = 20.0
PROFILER_WRITE_TIMEOUT = 60.0
EMULATOR_START_TIMEOUT = 30.0

_started = time.monotonic()


def progress(message: str) -> None:
    """A progress line on stderr (stdout is for the result table)."""
    print(f"[{time.monotonic() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


def emulator_command(admin_file: pathlib.Path, *, profile: str | None = None) -> list[str]:
    """The emulator CLI on a free port, writing its admin token to `admin_file` (both benchmarks use it);
    `profile` ("realistic") starts it from that fault profile."""
    return [
        sys.executable,
        "-m",
        "apitoken_operator",
        "emulator",
        "--port",
        "0",
        "--admin-token-file",
        str(admin_file),
        *(["--profile", profile] if profile else []),
    ]


class BenchmarkError(RuntimeError):
    """A scenario could not finish (a timeout, a process that died); the message says what and where."""


# --- statistics -------------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `fraction` of the values at or below it."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = math.ceil(fraction * len(ordered) - 1e-9)
    return ordered[min(max(rank, 1), len(ordered)) - 1]


# --- processes ----------------------------------------------------------------------------------------


def _spawn(
    command: list[str],
    *,
    log: pathlib.Path,
    stdout_pipe: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE if stdout_pipe else sink,
            stderr=sink,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only a prctl, no locks taken
            env={**os.environ, "APITOKEN_EMULATOR_VALIDATE": "0", **(env or {})},
        )


@dataclass
class Memory:
    """From /proc/PID/status, in MiB: the resident set now and its high-water mark."""

    rss_mb: float
    peak_mb: float


def read_memory(pid: int) -> Memory | None:
    try:
        text = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # kB -> MiB
    if len(values) != 2:  # a zombie has no memory lines
        return None
    return Memory(rss_mb=round(values["VmRSS"], 1), peak_mb=round(values["VmHWM"], 1))


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (children not included)."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime: fields 14 and 15


class CpuMeter:
    """CPU seconds each named process spent between `__init__` and `spent()`: where a scenario's time went."""

    def __init__(self, pids: dict[str, int], *, from_zero: frozenset[str] = frozenset()) -> None:
        self._pids = pids
        self._start = {name: 0.0 if name in from_zero else cpu_seconds(pid) for name, pid in pids.items()}
        self._wall = time.monotonic()

    def spent(self) -> dict[str, float]:
        result = {}
        for name, pid in self._pids.items():
            now, then = cpu_seconds(pid), self._start[name]
            if now is not None and then is not None:
                result[name] = round(now - then, 2)
        result["wall"] = round(time.monotonic() - self._wall, 1)
        return result


class Emulator:
    """`apitoken-operator emulator` in its own process, its admin endpoint, and bulk token helpers."""

    def __init__(self, workdir: pathlib.Path, *, profile: str | None = None) -> None:
        self.admin_file = workdir / "emulator-admin.token"
        self.log = workdir / "emulator.log"
        self.profile = profile
        self.process = _spawn(
            emulator_command(self.admin_file, profile=profile),
            log=self.log,
            stdout_pipe=True,
        )
        self.base_url = self._read_url()
        self.admin_token = self.admin_file.read_text(encoding="utf-8").strip()
        self.http = httpx.Client(base_url=self.base_url, timeout=60)

    def _read_url(self) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], EMULATOR_START_TIMEOUT)
        line = self.process.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("http://"):
            self.stop()
            raise BenchmarkError(f"the emulator did not start (printed {line!r}); see {self.log}")
        return line

    def stop(self) -> None:
        with contextlib.suppress(AttributeError):
            self.http.close()
        stop_process_group(self.process, timeout=10)

    # --- admin endpoint ---

    def counters(self) -> dict[str, int]:
        """Requests per operation since the last reset, whatever their outcome."""
        snapshot = self.http.get("/_emulator/counters").raise_for_status().json()
        return {operation: sum(outcomes.values()) for operation, outcomes in snapshot.items()}

    def counters_by_outcome(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = self.http.get("/_emulator/counters").raise_for_status().json()
        return result

    def reset_counters(self) -> None:
        self.http.delete("/_emulator/counters").raise_for_status()

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self.http.get("/_emulator/faults").raise_for_status().json()
        return result

    def set_faults(self, config: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        """PATCH (only the given settings) or, with `replace`, PUT the fault configuration."""
        method = "PUT" if replace else "PATCH"
        result: dict[str, Any] = (
            self.http.request(method, "/_emulator/faults", json=config).raise_for_status().json()
        )
        return result

    def clock(self) -> tuple[datetime, float]:
        """The emulator clock's now and its offset from real time, in seconds."""
        state = self.http.get("/_emulator/clock").raise_for_status().json()
        return parse_date(state["now"], now=datetime.now(UTC)), float(state["offset_seconds"])

    def set_clock_offset(self, offset_seconds: float) -> None:
        self.http.put("/_emulator/clock", json={"offset_seconds": offset_seconds}).raise_for_status()

    def token_count(self) -> int:
        return int(self.http.get("/_emulator/health").raise_for_status().json()["tokens"])

    def token_ids(self) -> set[str]:
        tokens = self.http.get("/_emulator/tokens").raise_for_status().json()["tokens"]
        return {token["id"] for token in tokens}

    # --- bulk, through the Tokens API with the admin token ---

    def create_tokens(self, count: int, *, prefix: str, concurrency: int = 32) -> list[str]:
        return asyncio.run(self._bulk_create(count, prefix=prefix, concurrency=concurrency))

    def revoke_tokens(self, ids: Iterable[str], *, concurrency: int = 32) -> int:
        """Delete these tokens (those already gone count as revoked); how many were deleted."""
        return asyncio.run(self._bulk_revoke(list(ids), concurrency=concurrency))

    async def _bulk_revoke(self, ids: list[str], *, concurrency: int) -> int:
        deleted = 0
        queue = iter(ids)
        async with self._session(concurrency) as session:

            async def worker() -> None:
                nonlocal deleted
                for token_id in queue:
                    async with session.delete(f"/api/v2/apiTokens/{token_id}") as response:
                        if response.status != 404:
                            response.raise_for_status()
                            deleted += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return deleted

    def _session(self, concurrency: int) -> aiohttp.ClientSession:
        # aiohttp, as in emulator_throughput.py: httpx's pool costs ~6 ms of client CPU per request here
        return aiohttp.ClientSession(
            base_url=self.base_url,
            headers={"Authorization": f"Api-Token {self.admin_token}"},
            connector=aiohttp.TCPConnector(limit=concurrency),
        )

    async def _bulk_create(self, count: int, *, prefix: str, concurrency: int) -> list[str]:
        ids: list[str] = []
        queue = iter(range(count))
        async with self._session(concurrency) as session:

            async def worker() -> None:
                for index in queue:
                    body = {"name": f"{prefix}-{index}", "scopes": ["metrics.read"]}
                    async with session.post("/api/v2/apiTokens", json=body) as response:
                        response.raise_for_status()
                        ids.append((await response.json())["id"])

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ids


@dataclass
class OperatorRun:
    """What one operator process left behind."""

    scenario: str
    pid: int
    log: str
    peak_rss_mb: float | None = None
    exit_code: int | None = None
    #: the profile's summary (--profile), beside its collapsed stacks
    profile: str | None = None
    #: whose operator code ran (--compare)
    variant: str = ""


class Operator:
    """`apitoken-operator run` watching one namespace, as its own process, logging to a file (no -v)."""

    def __init__(
        self,
        kubeconfig: pathlib.Path,
        namespace: str,
        log: pathlib.Path,
        *,
        scenario: str,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        profile: pathlib.Path | None = None,
    ) -> None:
        command = [
            sys.executable,
            "-m",
            "apitoken_operator",
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            namespace,
            "--default-connection",
            f"{namespace}/{CONNECTION}",
            "--allow-insecure-http",  # the emulator serves plain http on 127.0.0.1
            "--metrics-port",
            str(free_port()),
            *args,
        ]
        self.metrics_url = f"http://127.0.0.1:{command[command.index('--metrics-port') + 1]}/metrics"
        self.process = _spawn(command, log=log, env=env)
        self.record = OperatorRun(scenario=scenario, pid=self.process.pid, log=str(log))
        self.log = log
        self.profile = profile
        self._profiler = (
            profiling.attach(self.pid, profile, log.with_suffix(".py-spy.log")) if profile else None
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def memory(self) -> Memory | None:
        return read_memory(self.process.pid)

    def reconciles(self) -> int:
        """Reconciles the operator has finished, from its own metrics (0 while they are not served yet)."""
        try:
            text = httpx.get(self.metrics_url, timeout=5).text
        except httpx.HTTPError:
            return 0
        return int(
            sum(
                float(line.rpartition(" ")[2])
                for line in text.splitlines()
                if line.startswith(f"{METRICS_NAMESPACE}_reconciles_total{{")
            )
        )

    def kube_writes(self, resource: str | None = None) -> int | None:
        """Kubernetes writes the operator made so far (to `resource` only, if given), from its own metrics
        (None: an operator version without the metric, e.g. an older ref under --compare)."""
        try:
            text = httpx.get(self.metrics_url, timeout=5).text
        except httpx.HTTPError:
            return None
        prefix = f"{METRICS_NAMESPACE}_kubernetes_requests_total{{"
        found = [line for line in text.splitlines() if line.startswith(prefix)]
        if not found and f"# TYPE {METRICS_NAMESPACE}_kubernetes_requests_total" not in text:
            return None
        return int(
            sum(
                float(line.rpartition(" ")[2])
                for line in found
                if any(f'verb="{verb}"' in line for verb in WRITE_VERBS)
                and (resource is None or f'resource="{resource}"' in line)
            )
        )

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            raise BenchmarkError(f"the operator exited ({self.process.returncode}):\n{tail}")

    def stop(self) -> OperatorRun:
        memory = self.memory()
        if memory is not None:
            self.record.peak_rss_mb = memory.peak_mb
        stop_process_group(self.process, timeout=OPERATOR_STOP_TIMEOUT)
        self.record.exit_code = self.process.returncode
        if self._profiler is not None and self.profile is not None:
            try:
                self._profiler.wait(timeout=PROFILER_WRITE_TIMEOUT)  # it writes when the operator is gone
            except subprocess.TimeoutExpired:
                stop_process_group(self._profiler, timeout=5)
            if self.profile.is_file():
                summary = self.profile.with_suffix(".top.txt")
                summary.write_text(profiling.summarize(self.profile))
                self.record.profile = str(summary)
        return self.record


# --- Kubernetes -----------------------------------------------------------------------------------


def kube_client(kubeconfig: pathlib.Path, *, pool: int = 32) -> kubernetes.client.ApiClient:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = pool
    return kubernetes.client.ApiClient(configuration)


def apitoken(name: str, *, enabled: bool) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ApiToken",
        "metadata": {"name": name},
        "spec": {"name": name, "scopes": ["metrics.read"], "enabled": enabled},
    }


def prepare_namespace(
    api: kubernetes.client.ApiClient, namespace: str, emulator: Emulator, *, finalizer_policy: bool = True
) -> None:
    """The namespace and its connection Secret (the operator's default connection); without
    `finalizer_policy`, labelled so that the admission finalizer policy leaves its ApiTokens alone."""
    core = kubernetes.client.CoreV1Api(api)
    labels = None if finalizer_policy else {WITHOUT_FINALIZER_POLICY: "true"}
    core.create_namespace(
        kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=namespace, labels=labels))
    )
    core.create_namespaced_secret(
        namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name=CONNECTION),
            string_data={"apiUrl": emulator.base_url, "apiToken": emulator.admin_token},
        ),
    )


def is_ready(body: dict[str, Any]) -> bool:
    """Ready=True for the current generation, with the Secret written (status.secretName set)."""
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ()
    )
    return bool(ready and status.get("observedGeneration") == generation and status.get("secretName"))


@dataclass
class ApiTokenWatch:
    """A thread watching one namespace's ApiTokens, stamping (monotonic) when each is first seen Ready
    and when each is deleted. Waiters block on a condition, not on polling."""

    api: kubernetes.client.ApiClient
    namespace: str
    ready_at: dict[str, float] = field(default_factory=dict)
    deleted_at: dict[str, float] = field(default_factory=dict)
    token_ids: dict[str, str] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)
    events: Counter[str] = field(default_factory=Counter)
    #: MODIFIED events (resourceVersion changes) per object
    modified: Counter[str] = field(default_factory=Counter)
    #: when (monotonic) each MODIFIED event arrived
    modified_at: list[float] = field(default_factory=list)
    #: what those MODIFIED events changed: `status.<key>` and `metadata.<key>` (annotations, finalizers,
    #: labels), one count per event and key; "other" when neither moved (spec, say)
    changed: Counter[str] = field(default_factory=Counter)
    #: objects whose status carries the token's creationDate (written by the first listing after a create)
    dated: set[str] = field(default_factory=set)
    reconnects: int = 0
    #: monotonic time of the last event of any kind (LISTED included)
    last_event_at: float = 0.0

    def __post_init__(self) -> None:
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.namespace}", daemon=True)
        self._last: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> ApiTokenWatch:
        self._thread.start()
        if not self._synced.wait(30):
            raise BenchmarkError(f"the watch of {self.namespace} did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.api.close()  # type: ignore[no-untyped-call]

    def _run(self) -> None:
        custom = kubernetes.client.CustomObjectsApi(self.api)
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    listing: dict[str, Any] = custom.list_namespaced_custom_object(  # type: ignore[assignment]
                        GROUP, VERSION, self.namespace, PLURAL
                    )
                    resource_version = listing["metadata"]["resourceVersion"]
                    for item in listing["items"]:
                        self._observe("LISTED", item, time.monotonic())
                    self._synced.set()
                stream = kubernetes.watch.Watch().stream(  # type: ignore[no-untyped-call]
                    custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=5,  # comes back to look at the stop flag; resumes where it was
                )
                for event in stream:
                    now = time.monotonic()
                    kind, body = event["type"], event["object"]
                    if kind == "ERROR":
                        resource_version = None
                        break
                    resource_version = body["metadata"]["resourceVersion"]
                    if kind != "BOOKMARK":
                        self._observe(kind, body, now)
                    if self._stop.is_set():
                        break
                self.reconnects += 1
            except ApiException as error:
                if error.status == 410:
                    resource_version = None
                else:
                    time.sleep(0.2)
            except (urllib3.exceptions.HTTPError, OSError):
                time.sleep(0.2)

    def _observe(self, kind: str, body: dict[str, Any], now: float) -> None:
        name = body["metadata"]["name"]
        with self._condition:
            self.events[kind] += 1
            self.last_event_at = now
            if kind == "DELETED":
                self.deleted_at.setdefault(name, now)
                self.present.discard(name)
                self._last.pop(name, None)
            else:
                self.present.add(name)
                self._compare(kind, name, body, now)
                if name not in self.ready_at and is_ready(body):
                    self.ready_at[name] = now
                    self.token_ids[name] = (body.get("status") or {}).get("id") or ""
            self._condition.notify_all()

    def _compare(self, kind: str, name: str, body: dict[str, Any], now: float) -> None:
        metadata = body.get("metadata") or {}
        seen = {
            **{f"status.{key}": value for key, value in (body.get("status") or {}).items()},
            **{f"metadata.{key}": metadata.get(key) for key in ("annotations", "finalizers", "labels")},
        }
        if seen.get("status.creationDate"):
            self.dated.add(name)
        before = self._last.get(name)
        self._last[name] = seen
        if kind != "MODIFIED":
            return
        self.modified[name] += 1
        self.modified_at.append(now)
        if before is not None:
            keys = [key for key in seen.keys() | before.keys() if seen.get(key) != before.get(key)]
            self.changed.update(keys or ["other"])

    def seen(self, name: str) -> dict[str, Any]:
        """The object's status and metadata keys as last seen (`status.id`, `metadata.finalizers`, ...)."""
        with self._condition:
            return dict(self._last.get(name, {}))

    def wait(
        self,
        predicate: Callable[[], bool],
        *,
        timeout: float,
        what: str,
        check: Callable[[], None] | None = None,
        report: Callable[[], str] | None = None,
        every: float = 5.0,
    ) -> None:
        """Block until `predicate` (called under the lock) holds; `check` runs between wake-ups (e.g. the
        operator still alive), `report` prints progress every `every` seconds."""
        deadline = time.monotonic() + timeout
        next_report = time.monotonic() + every
        with self._condition:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchmarkError(f"timed out after {timeout:.0f} s waiting for {what}")
                self._condition.wait(min(remaining, 1.0))
                if check is not None:
                    check()
                if report is not None and time.monotonic() >= next_report:
                    progress(report())
                    next_report = time.monotonic() + every

    def ready_count(self, names: Iterable[str] | None = None) -> int:
        with self._condition:
            if names is None:
                return len(self.ready_at)
            return sum(1 for name in names if name in self.ready_at)


# --- the kube-apiserver's own request counters ----------------------------------------------------------

_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def apiserver_requests(plane: ControlPlane) -> Counter[tuple[str, str, str, str]]:
    """Requests served so far, by (resource, subresource, verb, code), from the apiserver's /metrics.

    Cluster-wide and from every client: the scenarios subtract their own writes and report the rest.
    """
    text = plane.request("GET", "/metrics")
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for line in str(text).splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("verb") not in WRITE_VERBS | READ_VERBS or not labels.get("resource"):
            continue  # WATCH, and non-resource URLs such as /metrics itself
        key = (
            labels.get("resource", ""),
            labels.get("subresource", ""),
            labels["verb"],
            labels.get("code", ""),
        )
        counts[key] += int(float(match["value"]))
    return counts


@dataclass
class RequestDelta:
    """Requests between two /metrics readings."""

    counts: Counter[tuple[str, str, str, str]]

    @classmethod
    def between(
        cls, before: Counter[tuple[str, str, str, str]], after: Counter[tuple[str, str, str, str]]
    ) -> RequestDelta:
        delta = Counter({key: after[key] - before.get(key, 0) for key in after})
        return cls(+delta)

    def total(self, resource: str | None = None, verbs: frozenset[str] = WRITE_VERBS) -> int:
        """Writes (by default) to `resource` (any when None)."""
        return sum(
            n
            for (res, _, verb, _), n in self.counts.items()
            if (resource is None or res == resource) and verb in verbs
        )

    def reads(self) -> int:
        return self.total(verbs=READ_VERBS)

    def conflicts(self) -> int:
        return sum(
            n for (_, _, verb, code), n in self.counts.items() if code == "409" and verb in WRITE_VERBS
        )

    def by_resource(self, verbs: frozenset[str] = WRITE_VERBS) -> dict[str, int]:
        """`{"apitokens/status PATCH": n, ...}`, sorted."""
        summary: Counter[str] = Counter()
        for (resource, subresource, verb, _), number in self.counts.items():
            if verb in verbs:
                summary[f"{resource}{'/' + subresource if subresource else ''} {verb}"] += number
        return dict(sorted(summary.items()))


# --- the machine and the source --------------------------------------------------------------------------


def _first(path: str, key: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in pathlib.Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    return None


def _command(*command: str) -> str | None:
    try:
        result = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=30, cwd=SOURCE_ROOT
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _pinned(module: str) -> str | None:
    """The version tools/controlplane/go.mod pins (the binaries are built from it, so /version says
    v0.0.0-master)."""
    with contextlib.suppress(OSError):
        for line in (SOURCE_ROOT / "tools" / "controlplane" / "go.mod").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == module:
                return parts[1]
    return None


def machine() -> dict[str, Any]:
    memory_kb = _first("/proc/meminfo", "MemTotal")
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gb": round(int(memory_kb.split()[0]) / 1024 / 1024, 1) if memory_kb else None,
        "cpu_model": _first("/proc/cpuinfo", "model name"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "go": _command("go", "version"),
        "kubernetes": _pinned("k8s.io/kubernetes"),
        "etcd": _pinned("go.etcd.io/etcd/server/v3"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def commit() -> dict[str, Any]:
    status = _command("git", "status", "--porcelain")
    return {
        "sha": _command("git", "rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


# --- which operator code runs (--compare) ------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """The operator code a scenario runs: this tree's (the installed package), or a git ref's (--compare)."""

    label: str
    sha: str | None
    #: put first on the operator's PYTHONPATH (None: the installed package, i.e. this tree)
    python_path: pathlib.Path | None = None
    #: appended to every namespace the scenarios use, so two variants never share objects
    suffix: str = ""
    #: whether its install puts the finalizer on at admission (a ref from before admissionFinalizer: no)
    finalizer_policy: bool = True

    def env(self) -> dict[str, str]:
        if self.python_path is None:
            return {}
        inherited = os.environ.get("PYTHONPATH")
        return {"PYTHONPATH": os.pathsep.join(filter(None, [str(self.python_path), inherited]))}


def this_tree() -> Variant:
    status = commit()
    sha = status["sha"]
    return Variant(label=f"this tree ({(sha or '?')[:7]}{', dirty' if status['dirty'] else ''})", sha=sha)


def checkout(ref: str, into: pathlib.Path) -> Variant:
    """The operator package of `ref`, extracted with `git archive` (no worktree left behind), checked to be
    the one an operator process started with its `env()` imports."""
    sha = _command("git", "rev-parse", "--verify", f"{ref}^{{commit}}")
    if sha is None:
        raise BenchmarkError(f"--compare: {ref!r} is not a commit of this repository")
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", sha, "operator"], cwd=SOURCE_ROOT, check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    label = sha[:7] if sha.startswith(ref) else f"{ref} ({sha[:7]})"
    policy = FINALIZER_POLICY.relative_to(SOURCE_ROOT).as_posix()
    shipped = _command("git", "cat-file", "-e", f"{sha}:{policy}") is not None
    variant = Variant(
        label=label, sha=sha, python_path=into / "operator", suffix="-ref", finalizer_policy=shipped
    )
    found = subprocess.run(
        [sys.executable, "-c", "import apitoken_operator; print(apitoken_operator.__file__)"],
        env={**os.environ, **variant.env()},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not pathlib.Path(found).is_relative_to(into):
        raise BenchmarkError(f"--compare: the operator would import {found}, not {ref}'s copy in {into}")
    return variant


# --- the finalizer put on at admission (the chart's admissionFinalizer) ----------------------------------

FINALIZER_POLICY = SOURCE_ROOT / "deploy" / "components" / "admission-finalizer" / "finalizer-policy.yaml"
_FINALIZER = "dynatrace.apitokens.io/finalizer"
#: a namespace label: the finalizer policy does not apply there (a --compare ref that did not ship it)
WITHOUT_FINALIZER_POLICY = "benchmark.apitokens.io/without-finalizer-policy"
_ADMISSION = "/apis/admissionregistration.k8s.io/v1"


def install_finalizer_policy(plane: ControlPlane, *, timeout: float = 30.0) -> None:
    """The shipped MutatingAdmissionPolicy and binding (every namespace), as the chart installs them on
    Kubernetes 1.36+, and wait until a new ApiToken gets the finalizer (probed in `default`)."""
    policy, binding = (d for d in yaml.safe_load_all(FINALIZER_POLICY.read_text()) if d)
    binding["spec"]["matchResources"]["namespaceSelector"] = {
        "matchExpressions": [{"key": WITHOUT_FINALIZER_POLICY, "operator": "DoesNotExist"}]
    }
    plane.request("POST", f"{_ADMISSION}/mutatingadmissionpolicies", policy)
    plane.request("POST", f"{_ADMISSION}/mutatingadmissionpolicybindings", binding)
    path = f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"
    deadline = time.monotonic() + timeout
    for attempt in itertools.count():
        name = f"finalizer-probe-{attempt}"
        try:
            made = plane.request("POST", path, apitoken(name, enabled=True))
        except urllib.error.HTTPError as error:
            if error.code != 503:  # the policy's types are resolved for a second or so after it is made
                raise
            made = None
        if made is not None:
            plane.request("DELETE", f"{path}/{name}")
            if _FINALIZER in (made["metadata"].get("finalizers") or []):
                left = plane.request("GET", f"{path}/{name}")  # no operator here to release it
                left["metadata"]["finalizers"] = []
                plane.request("PUT", f"{path}/{name}", left)
                return
        if time.monotonic() > deadline:
            raise BenchmarkError(f"the finalizer policy did not apply within {timeout:g} s")
        time.sleep(0.5)
