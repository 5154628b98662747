"""The scenarios of the benchmark, each in a namespace of its own with an operator watching only it.

Each returns the keys it fills in the result JSON. Times are `time.monotonic()` differences; "Ready" is
what `harness.ApiTokenWatch` saw (Ready=True for the current generation, Secret written), never a poll.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import pathlib
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import kubernetes

from apitoken_devenv.controlplane import ControlPlane
from apitoken_operator.controller.observer import MAX_PAGE_SIZE as OBSERVER_PAGE_SIZE
from apitoken_operator.controller.observer import Observer
from apitoken_operator.dynatrace.client import DynatraceClient
from apitoken_operator.dynatrace.dates import format_date
from apitoken_operator.dynatrace.secrets import TokenSecret
from benchmarks.harness import (
    GROUP,
    PLURAL,
    READ_VERBS,
    VERSION,
    ApiTokenWatch,
    BenchmarkError,
    CpuMeter,
    Emulator,
    Operator,
    OperatorRun,
    RequestDelta,
    Variant,
    apiserver_requests,
    apitoken,
    kube_client,
    percentile,
    prepare_namespace,
    progress,
)

CREATE_THREADS = 16
READY_TIMEOUT = 60.0
RESUME_TIMEOUT = 180.0


@dataclass(frozen=True)
class Sizes:
    latency_tokens: int
    burst_tokens: int
    restart_seconds: float
    drift_tokens: int
    drift_interval: float
    drift_window: float
    rss_tokens: int
    #: Ready ApiTokens, all in use, watched in the steady state
    steady_tokens: int
    #: real seconds the steady state is measured for
    steady_seconds: float
    #: how many times faster than real time the emulator clock runs in that window
    steady_speed: float
    #: the operator's --last-used-interval in the steady scenario: emulated seconds, passed unscaled,
    #: because the operator compares it with the emulator's lastUsedDate values (emulator clock)
    steady_last_used_interval: float


FULL = Sizes(
    latency_tokens=100,
    burst_tokens=1000,
    restart_seconds=60.0,
    drift_tokens=10000,
    drift_interval=2.0,
    drift_window=20.0,
    rss_tokens=10000,
    steady_tokens=1000,
    steady_seconds=60.0,
    steady_speed=10.0,
    steady_last_used_interval=3600.0,
)
QUICK = Sizes(
    latency_tokens=100,
    burst_tokens=200,
    restart_seconds=10.0,
    drift_tokens=10000,
    drift_interval=2.0,
    drift_window=6.0,
    rss_tokens=300,
    steady_tokens=100,
    steady_seconds=30.0,
    steady_speed=10.0,
    steady_last_used_interval=3600.0,
)
#: The steady state's drift interval in emulated seconds (the operator gets it divided by the speed).
STEADY_DRIFT_INTERVAL = 60.0
#: Drift listings (after all are Ready) within which every object should have its token's dates.
DATING_LISTINGS = 3
#: the memory scenario's drift interval (s): its listings date the new tokens before the restart
RSS_DRIFT_INTERVAL = 10.0
#: How often the benchmark moves the emulator clock on during the steady window (real seconds).
CLOCK_STEP = 0.5


@dataclass
class Context:
    plane: ControlPlane
    emulator: Emulator
    sizes: Sizes
    workdir: pathlib.Path
    #: extra arguments for every operator started
    operator_args: list[str] = field(default_factory=list)
    #: whose operator code runs (this tree's, or a ref's with --compare)
    variant: Variant = field(default_factory=lambda: Variant(label="this tree", sha=None))
    #: record a py-spy profile of every operator started (--profile)
    profile: bool = False
    api: kubernetes.client.ApiClient = field(init=False)
    runs: list[OperatorRun] = field(default_factory=list)
    running: list[Operator] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.api = kube_client(self.plane.kubeconfig, pool=CREATE_THREADS * 2)

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api)

    def prepare(self, namespace: str) -> None:
        """The scenario's namespace and connection Secret, as this variant's install would have it."""
        prepare_namespace(self.api, namespace, self.emulator, finalizer_policy=self.variant.finalizer_policy)

    def namespace(self, base: str) -> str:
        """The scenario's namespace for this variant: with --compare each variant has its own."""
        return f"{base}{self.variant.suffix}"

    def watch(self, namespace: str) -> ApiTokenWatch:
        # its own client: a long-lived watch must not take a connection the creators need
        return ApiTokenWatch(kube_client(self.plane.kubeconfig, pool=2), namespace)

    def start_operator(self, namespace: str, scenario: str, *args: str) -> Operator:
        log = (
            self.workdir
            / f"operator-{len(self.runs) + len(self.running)}-{scenario}{self.variant.suffix}.log"
        )
        operator = Operator(
            self.plane.kubeconfig,
            namespace,
            log,
            scenario=scenario,
            args=[*self.operator_args, *args],
            env=self.variant.env(),
            profile=log.with_suffix(".profile.txt") if self.profile else None,
        )
        operator.record.variant = self.variant.label
        self.running.append(operator)
        progress(f"{scenario}: {self.variant.label} operator started (pid {operator.pid}, log {log.name})")
        return operator

    def stop_operator(self, operator: Operator) -> OperatorRun:
        if operator in self.running:
            self.running.remove(operator)
        run = operator.stop()
        self.runs.append(run)
        return run

    def cpu(self, operator: Operator | None = None, *, from_start: bool = False) -> CpuMeter:
        """CPU time of each process in play: the control plane, the emulator, this benchmark, the operator
        (`from_start`: the operator's since it started, which it just did)."""
        pids = {component.name: component.process.pid for component in self.plane.components}
        pids["emulator"] = self.emulator.process.pid
        pids["benchmark"] = os.getpid()
        if operator is not None:
            pids["operator"] = operator.pid
        return CpuMeter(pids, from_zero=frozenset({"operator"} if from_start else ()))

    def stop_all(self) -> None:
        for operator in list(self.running):
            self.stop_operator(operator)

    def create(self, namespace: str, name: str, *, enabled: bool = True) -> float:
        """Create one ApiToken; the monotonic time at which the call returned."""
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, apitoken(name, enabled=enabled)
        )
        return time.monotonic()

    def delete(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def create_many(
        self, namespace: str, names: list[str], *, enabled: Callable[[int], bool]
    ) -> tuple[float, dict[str, float]]:
        """Create `names` from CREATE_THREADS threads: the monotonic time at which the first call started,
        and when each call returned."""
        returned: dict[str, float] = {}
        lock = threading.Lock()
        step = max(1000, len(names) // 10)

        def one(index: int) -> None:
            at = self.create(namespace, names[index], enabled=enabled(index))
            with lock:
                returned[names[index]] = at
                if len(returned) % step == 0 and len(returned) < len(names):
                    progress(f"  {len(returned)}/{len(names)} created")

        started = time.monotonic()
        with ThreadPoolExecutor(CREATE_THREADS) as pool:
            list(pool.map(one, range(len(names))))
        return started, returned

    def warm_up(
        self, namespace: str, watch: ApiTokenWatch, operator: Operator, *, keep: bool = False
    ) -> None:
        """One ApiToken to Ready: the operator is up, its watch runs, its connection is resolved."""
        self.create(namespace, "warm-up")
        watch.wait(
            lambda: "warm-up" in watch.ready_at,
            timeout=READY_TIMEOUT,
            what="the warm-up ApiToken to be Ready",
            check=operator.check_alive,
        )
        if not keep:
            self.delete(namespace, "warm-up")
            watch.wait(
                lambda: "warm-up" in watch.deleted_at,
                timeout=READY_TIMEOUT,
                what="the warm-up ApiToken to be deleted",
                check=operator.check_alive,
            )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": _ms(percentile(values, 0.50)),
        "p99": _ms(percentile(values, 0.99)),
        "max": _ms(max(values)),
        "min": _ms(min(values)),
        "mean": _ms(statistics.fmean(values)),
    }


def _per_token(
    spent: dict[str, float],
    tokens: int,
    *,
    operator_writes: int | None,
    requests: RequestDelta,
    ours: int = 0,
) -> dict[str, Any]:
    """The issue's per-token figures: the operator's CPU (from /proc) and its Kubernetes writes.

    The writes are the operator's own count (its requests metric). An operator without that metric (an
    older ref under --compare) is measured by the API server's count instead, less the benchmark's own
    `ours` writes and kube-controller-manager's (its leader-election Lease; the garbage collector's
    Secret deletes): the same figure as long as the operator writes no Lease and deletes no owned Secret.
    """
    cpu = spent.get("operator")
    apiserver = requests.total() - ours
    if operator_writes is None:
        writes = apiserver - requests.total("leases") - requests.total("secrets", frozenset({"DELETE"}))
        source = "apiserver, less kube-controller-manager's Lease and Secret DELETE writes"
    else:
        writes, source = operator_writes, "operator metrics"
    return {
        "operator_cpu_ms_per_token": round(cpu * 1000 / tokens, 2) if cpu is not None and tokens else None,
        "kube_writes": writes,
        "kube_writes_per_token": round(writes / tokens, 2) if tokens else None,
        "kube_writes_source": source,
        "apiserver_writes_per_token": round(apiserver / tokens, 2) if tokens else None,
    }


class _Writes:
    """The operator's Kubernetes writes since it was made (None when the operator does not count them)."""

    def __init__(self, operator: Operator) -> None:
        self._operator = operator
        self._start = operator.kube_writes()

    def spent(self) -> int | None:
        now = self._operator.kube_writes()
        return None if now is None or self._start is None else now - self._start


def _failed_calls(emulator: Emulator) -> int:
    """Calls answered with anything but 2xx (throttling, errors, dropped): should be none here."""
    return sum(
        number
        for outcomes in emulator.counters_by_outcome().values()
        for outcome, number in outcomes.items()
        if not outcome.startswith("2")
    )


# --- create -> Ready, one after another ---------------------------------------------------------------


def apply_to_ready(ctx: Context) -> dict[str, Any]:
    namespace, count = ctx.namespace("bench-latency"), ctx.sizes.latency_tokens
    ctx.prepare(namespace)
    with ctx.watch(namespace) as watch:
        operator = ctx.start_operator(namespace, "apply_to_ready")
        ctx.warm_up(namespace, watch, operator, keep=True)
        ctx.emulator.reset_counters()
        cpu = ctx.cpu(operator)
        before, own = apiserver_requests(ctx.plane), _Writes(operator)
        latencies: list[float] = []
        for index in range(count):
            name = f"latency-{index:04d}"
            returned = ctx.create(namespace, name)
            watch.wait(
                functools.partial(watch.ready_at.__contains__, name),
                timeout=READY_TIMEOUT,
                what=f"{name} to be Ready",
                check=operator.check_alive,
            )
            latencies.append(watch.ready_at[name] - returned)
        calls = ctx.emulator.counters()
        spent = cpu.spent()
        time.sleep(1.0)  # kopf's last patch of the last object
        requests = RequestDelta.between(before, apiserver_requests(ctx.plane))
        written = own.spent()
        ctx.stop_operator(operator)
    progress(f"apply_to_ready: {count} ApiTokens, p50 {_ms(percentile(latencies, 0.5))} ms")
    return {
        "apply_to_ready_ms": {
            "n": count,
            **_summary_ms(latencies),
            "dynatrace_calls": sum(calls.values()),
            "dynatrace_calls_by_operation": calls,
            **_per_token(spent, count, operator_writes=written, requests=requests, ours=count),
            "kubernetes_reads_per_token": round(requests.reads() / count, 2),
            "kubernetes_writes_by_resource": requests.by_resource(),
            "kubernetes_reads_by_resource": requests.by_resource(READ_VERBS),
            "cpu_seconds": spent,
        }
    }


# --- burst, restart, delete ------------------------------------------------------------------------------


def burst_restart_delete(ctx: Context) -> dict[str, Any]:
    namespace, count = ctx.namespace("bench-burst"), ctx.sizes.burst_tokens
    ctx.prepare(namespace)
    names = [f"burst-{index:05d}" for index in range(count)]
    enabled_count = (count + 1) // 2

    def enabled(index: int) -> bool:
        return index % 2 == 0

    result: dict[str, Any] = {}
    with ctx.watch(namespace) as watch:
        operator = ctx.start_operator(namespace, "burst")
        # kept: the operator closes a connection's client when its last object is gone, and a new one
        # costs an owner lookup and a first listing that are no part of the burst
        ctx.warm_up(namespace, watch, operator, keep=True)
        ctx.emulator.reset_counters()
        before, own = apiserver_requests(ctx.plane), _Writes(operator)
        cpu = ctx.cpu(operator)
        progress(f"burst: creating {count} ApiTokens from {CREATE_THREADS} threads")
        started, created_at = ctx.create_many(namespace, names, enabled=enabled)
        created = time.monotonic()
        watch.wait(
            lambda: all(name in watch.ready_at for name in names),
            timeout=max(120.0, count * 0.5),
            what=f"{count} ApiTokens to be Ready",
            check=operator.check_alive,
            report=lambda: f"  {watch.ready_count(names)}/{count} Ready",
        )
        last_ready = max(watch.ready_at[name] for name in names)
        spent = cpu.spent()
        time.sleep(1.0)  # let trailing writes (kopf's last-handled annotation, Events) land before counting
        calls = ctx.emulator.counters()
        failed = _failed_calls(ctx.emulator)
        writes = RequestDelta.between(before, apiserver_requests(ctx.plane))
        ours = count  # the benchmark's own POSTs of ApiTokens
        result["burst"] = {
            "tokens": count,
            "enabled": enabled_count,
            "disabled": count - enabled_count,
            "seconds": round(last_ready - started, 2),
            "create_calls_seconds": round(created - started, 2),
            "dynatrace_calls": sum(calls.values()),
            # every create is a POST and one PUT (the rename from its attempt's name to the declared one,
            # with the enabled state), enabled or not
            "dynatrace_calls_expected": 2 * count,
            "dynatrace_calls_by_operation": calls,
            "dynatrace_calls_failed": failed,
            "kubernetes_writes": writes.total() - ours,
            **_per_token(spent, count, operator_writes=own.spent(), requests=writes, ours=ours),
            "kubernetes_write_conflicts": writes.conflicts(),
            "kubernetes_writes_by_resource": writes.by_resource(),
            "kubernetes_reads": writes.reads(),
            "kubernetes_reads_by_resource": writes.by_resource(READ_VERBS),
            "kubernetes_writes_note": f"every write the apiserver served minus our {ours} creates",
            "ready_after_create_ms": _summary_ms([watch.ready_at[n] - created_at[n] for n in names]),
            "cpu_seconds": spent,
        }
        progress(f"burst: {count} Ready in {last_ready - started:.2f} s; Dynatrace calls {calls}")

        result["restart"] = _restart(
            ctx, namespace, operator, watch, names, seconds=ctx.sizes.restart_seconds
        )
        operator = ctx.running[-1]

        result["burst"].update(_delete(ctx, namespace, operator, watch, names))
        ctx.stop_operator(operator)
    return result


def _restart(
    ctx: Context,
    namespace: str,
    operator: Operator,
    watch: ApiTokenWatch,
    names: list[str],
    *,
    seconds: float,
    scenario: str = "restart",
) -> dict[str, Any]:
    """SIGTERM the operator, start it again over the same Ready objects, count what it does.

    The window is `seconds` from the start; if the operator has not looked at every object by then (its
    reconciles counter, from its metrics), it is extended until it has, up to RESUME_TIMEOUT. Its CPU is
    counted from the process's start (the import and log-in included), per object it resumed.
    """
    ctx.stop_operator(operator)
    ctx.emulator.reset_counters()
    before = apiserver_requests(ctx.plane)
    events_before = watch.events.copy()
    operator = ctx.start_operator(namespace, scenario)
    cpu = ctx.cpu(operator, from_start=True)
    written: int | None = None
    started = time.monotonic()
    resumed_at: float | None = None
    while True:
        operator.check_alive()
        now = time.monotonic()
        if resumed_at is None and operator.reconciles() >= len(watch.present):  # the warm-up's too
            resumed_at = now
        if now - started >= seconds and (resumed_at is not None or now - started >= RESUME_TIMEOUT):
            break
        # Not faster: every scrape renders two series per object, in the operator's CPU (a real
        # Prometheus scrapes every 30-60 s)
        time.sleep(2.0)
    observed = time.monotonic() - started
    spent = cpu.spent()
    memory = operator.memory()
    time.sleep(1.0)  # a write made at the end of the window reaches the counters
    calls = ctx.emulator.counters()
    writes = RequestDelta.between(before, apiserver_requests(ctx.plane))
    written = operator.kube_writes()  # a new process: counted from its start
    modified = watch.events["MODIFIED"] - events_before["MODIFIED"]
    progress(
        f"restart: {observed:.0f} s after start: Dynatrace calls {calls}, Kubernetes writes {writes.total()}"
    )
    return {
        "tokens": len(names),
        "objects": len(watch.present),  # the burst's and the warm-up's
        "seconds_observed": round(observed, 1),
        "all_resumed_seconds": round(resumed_at - started, 1) if resumed_at is not None else None,
        "creates": calls.get("create", 0),
        # the operator's own when it counts them: kube-controller-manager's garbage collector may still be
        # deleting an earlier scenario's Secrets meanwhile
        "secret_writes": operator_secret_writes
        if (operator_secret_writes := operator.kube_writes("secrets")) is not None
        else writes.total("secrets"),
        "dynatrace_calls": sum(calls.values()),
        "dynatrace_calls_by_operation": calls,
        "kubernetes_writes": writes.total(),
        "kubernetes_writes_by_resource": writes.by_resource(),
        "kubernetes_reads": writes.reads(),
        "kubernetes_reads_by_resource": writes.by_resource(READ_VERBS),
        "apitoken_modified_events": modified,
        **_per_token(spent, len(watch.present), operator_writes=written, requests=writes),
        "rss_mb": memory.rss_mb if memory else None,
        "peak_rss_mb": memory.peak_mb if memory else None,
        "cpu_seconds": spent,
    }


def _delete(
    ctx: Context, namespace: str, operator: Operator, watch: ApiTokenWatch, names: list[str]
) -> dict[str, Any]:
    """Delete every object at once; done when all are gone and the emulator holds none of their tokens."""
    ids = {watch.token_ids[name] for name in names}
    ctx.emulator.reset_counters()
    before = apiserver_requests(ctx.plane)
    progress(f"burst: deleting {len(names)} ApiTokens")
    cpu, own = ctx.cpu(operator), _Writes(operator)
    started = time.monotonic()
    with ThreadPoolExecutor(CREATE_THREADS) as pool:
        list(pool.map(lambda name: ctx.delete(namespace, name), names))
    watch.wait(
        lambda: all(name in watch.deleted_at for name in names),
        timeout=max(120.0, len(names) * 0.5),
        what=f"{len(names)} ApiTokens to be gone",
        check=operator.check_alive,
        report=lambda: f"  {sum(1 for n in names if n in watch.deleted_at)}/{len(names)} gone",
    )
    objects_gone = max(watch.deleted_at[name] for name in names)
    deadline = time.monotonic() + 60
    while ids & ctx.emulator.token_ids():
        if time.monotonic() > deadline:
            raise BenchmarkError("objects are gone but their tokens are still in the emulator after 60 s")
        time.sleep(0.1)
    tokens_gone = time.monotonic()
    spent = cpu.spent()
    time.sleep(1.0)
    calls = ctx.emulator.counters()
    writes = RequestDelta.between(before, apiserver_requests(ctx.plane))
    ours = len(names)
    progress(f"burst: all deleted in {objects_gone - started:.2f} s; Dynatrace calls {calls}")
    return {
        "delete_seconds": round(max(objects_gone, tokens_gone if ids else 0.0) - started, 2),
        "delete_objects_gone_seconds": round(objects_gone - started, 2),
        "delete_tokens_left": len(ids & ctx.emulator.token_ids()),
        "delete_dynatrace_calls": sum(calls.values()),
        "delete_dynatrace_calls_by_operation": calls,
        "delete_kubernetes_writes": writes.total() - ours,
        "delete_kubernetes_writes_by_resource": writes.by_resource(),
        "delete_kubernetes_reads": writes.reads(),
        **{
            f"delete_{key}": value
            for key, value in _per_token(
                spent, len(names), operator_writes=own.spent(), requests=writes, ours=ours
            ).items()
        },
        "delete_cpu_seconds": spent,
    }


# --- drift -------------------------------------------------------------------------------------------


async def _refresh(base_url: str, admin: str) -> tuple[float, int]:
    async with DynatraceClient(base_url, token=TokenSecret(admin)) as client:
        observer = Observer(client, max_age=0)
        started = time.perf_counter()
        await observer.refresh()
        elapsed = time.perf_counter() - started
        return elapsed, len(await observer.tokens(max_age=3600))


def drift(ctx: Context) -> dict[str, Any]:
    """The environment topped up to `drift_tokens` tokens (tokens left by earlier scenarios count; rss
    and steady revoke theirs; nothing is removed afterwards, so this runs last), then one drift listing
    timed and its list calls counted."""
    emulator = ctx.emulator
    existing = emulator.token_count()
    missing = max(0, ctx.sizes.drift_tokens - existing)
    progress(f"drift: {existing} tokens in the emulator; creating {missing} more")
    started = time.monotonic()
    emulator.create_tokens(missing, prefix="drift")
    create_seconds = time.monotonic() - started
    total = emulator.token_count()
    emulator.reset_counters()
    runs: list[float] = []
    observed = 0
    list_calls = 0
    for attempt in range(3):
        elapsed, observed = asyncio.run(_refresh(emulator.base_url, emulator.admin_token))
        runs.append(elapsed)
        if attempt == 0:
            list_calls = emulator.counters().get("list", 0)
    progress(f"drift: {total} tokens listed by {list_calls} call(s) in {statistics.median(runs):.2f} s")
    result: dict[str, Any] = {
        "tokens": total,
        "list_calls": list_calls,
        "seconds": round(statistics.median(runs), 3),
        "seconds_runs": [round(r, 3) for r in runs],
        "observed_tokens": observed,
        "emulator_create_rate_per_s": round(missing / create_seconds) if missing else None,
    }
    result.update(_drift_operator(ctx))
    return {"drift": result}


def _drift_operator(ctx: Context) -> dict[str, Any]:
    """The real operator, `--drift-interval` short, a few objects of its own among the environment's
    tokens: its list calls over a window, and how many drift checks (listings of `pages` calls) that is."""
    namespace, interval, window = (
        ctx.namespace("bench-drift"),
        ctx.sizes.drift_interval,
        ctx.sizes.drift_window,
    )
    ctx.prepare(namespace)
    with ctx.watch(namespace) as watch:
        operator = ctx.start_operator(namespace, "drift", "--drift-interval", str(interval))
        ctx.warm_up(namespace, watch, operator, keep=True)
        names = [f"drift-{index}" for index in range(3)]
        for name in names:
            ctx.create(namespace, name)
        watch.wait(
            lambda: all(name in watch.ready_at for name in names),
            timeout=READY_TIMEOUT,
            what="the drift scenario's ApiTokens to be Ready",
            check=operator.check_alive,
        )
        listed = ctx.emulator.token_count()
        pages = math.ceil(listed / OBSERVER_PAGE_SIZE)
        ctx.emulator.reset_counters()
        memory_before = operator.memory()
        before, own = apiserver_requests(ctx.plane), _Writes(operator)
        cpu = ctx.cpu(operator)
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:
            operator.check_alive()
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        spent = cpu.spent()
        calls = ctx.emulator.counters()
        memory = operator.memory()
        writes = RequestDelta.between(before, apiserver_requests(ctx.plane))
        written = own.spent()
        ctx.stop_operator(operator)
    checks = calls.get("list", 0) / max(pages, 1)
    # its objects, the warm-up's included
    per_token = _per_token(spent, len(names) + 1, operator_writes=written, requests=writes)
    # the drift check's cost is per token listed, each time it lists them
    per_token["operator_cpu_ms_per_token"] = (
        round(spent["operator"] * 1000 / (listed * checks), 4) if checks and "operator" in spent else None
    )
    return {
        **per_token,
        "operator_cpu_ms_per_token_note": "operator CPU in the window per token listed per drift check",
        "operator_cpu_seconds": spent.get("operator"),
        "operator_interval_seconds": interval,
        "operator_window_seconds": window,
        "operator_list_calls": calls.get("list", 0),
        "operator_pages_per_check": pages,
        "operator_drift_checks": round(calls.get("list", 0) / max(pages, 1), 1),
        "operator_drift_checks_expected": round(window / interval, 1),
        "operator_other_calls": sum(calls.values()) - calls.get("list", 0),
        "operator_rss_mb": memory.rss_mb if memory else None,
        "operator_rss_mb_before_window": memory_before.rss_mb if memory_before else None,
    }


# --- steady state ----------------------------------------------------------------------------------------


class _ClockDriver:
    """A thread running the emulator clock `speed` times faster than real time: every CLOCK_STEP real
    seconds it sets the clock's offset to where it should be by now (so no step is lost to a slow call)."""

    def __init__(self, emulator: Emulator, speed: float) -> None:
        self._emulator = emulator
        self._speed = speed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emulator-clock", daemon=True)
        self.steps = 0
        self.error: Exception | None = None

    def __enter__(self) -> _ClockDriver:
        _, self._offset = self._emulator.clock()
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.error is None and not self._thread.is_alive():
            self._step()  # the clock where it should be at the end, not up to one step behind

    def _run(self) -> None:
        while not self._stop.wait(CLOCK_STEP):
            try:
                self._step()
            except Exception as error:  # reported by the scenario, not lost in this thread
                self.error = error
                return

    def _step(self) -> None:
        elapsed = time.monotonic() - self._started
        self._emulator.set_clock_offset(self._offset + (self._speed - 1) * elapsed)
        self.steps += 1


def _by_emulated_minute(
    moments: list[float], real_start: float, emulated_start: datetime, speed: float
) -> dict[str, int]:
    """Monotonic moments as `{"HH:MM": n}` of the emulator clock (UTC), the minutes with any."""
    minutes: Counter[str] = Counter()
    for moment in moments:
        emulated = emulated_start + timedelta(seconds=(moment - real_start) * speed)
        minutes[emulated.strftime("%H:%M")] += 1
    return dict(minutes)


def _per_hour(number: float, hours: float, *, digits: int = 2) -> float | None:
    return round(number / hours, digits) if hours > 0 else None


def _steady_ready(
    ctx: Context,
    namespace: str,
    watch: ApiTokenWatch,
    operator: Operator,
    names: list[str],
    *,
    drift_interval: float,
) -> tuple[float, float, float, list[str]]:
    """Create `names`, wait until all are Ready, then until a listing has dated them all and the writes it
    caused have landed: when the first create started, when all were Ready, when all were dated (or
    waiting for it stopped), and the objects that were not."""
    count = len(names)
    progress(f"steady: creating {count} ApiTokens")
    started, _ = ctx.create_many(namespace, names, enabled=lambda index: True)
    watch.wait(
        lambda: all(name in watch.ready_at for name in names),
        timeout=max(300.0, count * 0.5),
        what=f"{count} ApiTokens to be Ready",
        check=operator.check_alive,
        report=lambda: f"  {watch.ready_count(names)}/{count} Ready",
        every=10.0,
    )
    all_ready = time.monotonic()
    # The first listing after a create writes the dates its answer lacks (creationDate, the
    # first use): a one-off per object, not the steady state, so the window starts after it. Objects
    # still without them after a few listings are reported (`undated`), not waited for.
    undated, dated = _wait_dated(
        watch, operator, names, give_up=all_ready + drift_interval * DATING_LISTINGS + 30.0
    )
    if undated:
        progress(
            f"steady: {len(undated)} ApiToken(s) still without status.creationDate "
            f"{dated - all_ready:.0f} s after all were Ready, e.g. {undated[:3]}"
        )
    return started, all_ready, dated, undated


def _wait_dated(
    watch: ApiTokenWatch, operator: Operator, names: list[str], *, give_up: float
) -> tuple[list[str], float]:
    """Wait until a drift listing has written every object's dates (a create's answer has none) and the
    writes it caused have landed, or until `give_up`: the objects left without them, and when waiting
    for the dates ended."""
    count = len(names)
    watch.wait(
        lambda: all(name in watch.dated for name in names) or time.monotonic() >= give_up,
        timeout=max(give_up - time.monotonic(), 0.0) + 10.0,
        what="the first drift listing's dates on every ApiToken",
        check=operator.check_alive,
        report=lambda: f"  {sum(1 for n in names if n in watch.dated)}/{count} dated",
    )
    dated = time.monotonic()
    watch.wait(
        lambda: time.monotonic() - watch.last_event_at >= 2.0,
        timeout=60.0,
        what="the ApiTokens to be quiet for 2 s after the first listing",
        check=operator.check_alive,
    )
    return [name for name in names if name not in watch.dated], dated


def steady(ctx: Context) -> dict[str, Any]:
    """N Ready ApiTokens whose tokens consumers use every second, watched for a while with the emulator
    clock running `steady_speed` times faster than real time: ApiToken writes and Dynatrace calls per
    emulated hour, and the operator's CPU.

    The operator's timers are real time, so its drift interval is scaled down by the speed (60 emulated
    seconds). Its --last-used-interval is not a timer: it is compared with the tokens' lastUsedDate values,
    which the emulator writes from its own clock, so it is passed unscaled (emulated seconds).
    """
    namespace, count = ctx.namespace("bench-steady"), ctx.sizes.steady_tokens
    speed, window = ctx.sizes.steady_speed, ctx.sizes.steady_seconds
    drift_interval = STEADY_DRIFT_INTERVAL / speed
    last_used_interval = ctx.sizes.steady_last_used_interval
    emulator = ctx.emulator
    names = [f"steady-{index:05d}" for index in range(count)]
    ctx.prepare(namespace)
    faults_before = emulator.faults()
    usage = {"usage_interval": 1.0, "usage_ratio": 1.0}
    emulator.set_faults(usage)
    try:
        with ctx.watch(namespace) as watch:
            operator = ctx.start_operator(
                namespace,
                "steady",
                "--drift-interval",
                f"{drift_interval:g}",
                "--last-used-interval",
                f"{last_used_interval:g}",
            )
            ctx.warm_up(namespace, watch, operator)
            started, all_ready, dated, undated = _steady_ready(
                ctx, namespace, watch, operator, names, drift_interval=drift_interval
            )
            undated_example = watch.seen(undated[0]) if undated else None
            progress(
                f"steady: {count} Ready {all_ready - started:.1f} s after the first create, dated "
                f"{dated - all_ready:.1f} s later; measuring {window:g} s at {speed:g}x"
            )
            measured = _steady_window(ctx, watch, operator, seconds=window, speed=speed, tokens=count)
            ctx.stop_operator(operator)
    finally:
        emulator.set_faults(faults_before, replace=True)
    hours = measured["emulated_seconds"] / 3600
    writes = measured["apitoken_writes"]
    modified = measured["apitoken_modified_events"]
    calls = measured["dynatrace_calls_by_operation"]
    pages = max(1, math.ceil(emulator.token_count() / OBSERVER_PAGE_SIZE))
    result = {
        "tokens": count,
        "speed": speed,
        "scaling": {
            "emulator_clock": f"{speed:g}x real time: its offset moved on every {CLOCK_STEP:g} real s",
            "operator_drift_interval_seconds": drift_interval,
            "operator_drift_interval_emulated_seconds": STEADY_DRIFT_INTERVAL,
            "operator_last_used_interval_seconds": last_used_interval,
            "operator_last_used_interval_note": (
                "not scaled: the operator compares it with lastUsedDate values, which the emulator "
                "writes from its clock (already running faster)"
            ),
            "usage": usage,
        },
        "apitoken_writes_per_token_per_hour": _per_hour(writes / count, hours, digits=3),
        "apitoken_modified_per_token_per_hour": _per_hour(modified / count, hours, digits=3),
        "dynatrace_calls_per_hour_by_operation": {op: _per_hour(n, hours) for op, n in calls.items()},
        "drift_listings": round(calls.get("list", 0) / pages, 1),
        "drift_listings_expected": round(measured["emulated_seconds"] / STEADY_DRIFT_INTERVAL, 1),
        "ready_seconds": round(all_ready - started, 1),
        "dated_after_ready_seconds": round(dated - all_ready, 1),
        # objects whose status still lacked the token's creationDate when the window began (the first
        # listing's dates never reached them); their dates, if they come, are written in the window
        "undated_at_start": len(undated),
        "undated_at_start_names": undated[:10],
        "undated_at_start_example": undated_example,
        **measured,
    }
    progress(
        f"steady: {writes} ApiToken writes in {measured['emulated_minutes']:g} emulated min "
        f"({result['apitoken_writes_per_token_per_hour']}/token/hour); Dynatrace calls {calls}"
    )
    return {"steady": result}


def _steady_window(
    ctx: Context, watch: ApiTokenWatch, operator: Operator, *, seconds: float, speed: float, tokens: int
) -> dict[str, Any]:
    """`seconds` of real time with the emulator clock `speed` times faster: what happened meanwhile."""
    emulator = ctx.emulator
    emulator.reset_counters()
    before = apiserver_requests(ctx.plane)
    modified_before, changed_before = watch.modified.copy(), watch.changed.copy()
    reconciles_before = operator.reconciles()
    cpu, own = ctx.cpu(operator), _Writes(operator)
    clock_start, _ = emulator.clock()
    real_start = time.monotonic()
    with _ClockDriver(emulator, speed) as clock:
        deadline = real_start + seconds
        while time.monotonic() < deadline:
            operator.check_alive()
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    real_seconds = time.monotonic() - real_start
    if clock.error is not None:
        raise BenchmarkError(f"could not move the emulator clock: {clock.error}")
    clock_end, _ = emulator.clock()
    spent = cpu.spent()
    calls = emulator.counters()
    requests = RequestDelta.between(before, apiserver_requests(ctx.plane))
    modified = watch.modified - modified_before
    emulated = (clock_end - clock_start).total_seconds()
    return {
        "real_seconds": round(real_seconds, 1),
        "emulated_seconds": round(emulated, 1),
        "emulated_minutes": round(emulated / 60, 1),
        "emulated_start": format_date(clock_start),
        "emulated_end": format_date(clock_end),
        "clock_steps": clock.steps,
        "apitoken_writes": requests.total("apitokens"),
        "apitoken_modified_events": sum(modified.values()),
        "apitoken_objects_modified": len(modified),
        "apitoken_max_modified_per_object": max(modified.values(), default=0),
        "apitoken_changed_fields": dict(sorted((watch.changed - changed_before).items())),
        "apitoken_modified_by_emulated_minute": _by_emulated_minute(
            [at for at in watch.modified_at if at >= real_start], real_start, clock_start, speed
        ),
        "operator_reconciles": operator.reconciles() - reconciles_before,
        "kubernetes_writes": requests.total(),
        "kubernetes_writes_by_resource": requests.by_resource(),
        "kubernetes_reads_by_resource": requests.by_resource(READ_VERBS),
        "dynatrace_calls": sum(calls.values()),
        "dynatrace_calls_by_operation": calls,
        "dynatrace_calls_failed": _failed_calls(emulator),
        "operator_cpu_seconds": spent.get("operator"),
        "cpu_seconds": spent,
        # per Ready token over the whole window (not per hour)
        **_per_token(spent, tokens, operator_writes=own.spent(), requests=requests),
    }


# --- memory -------------------------------------------------------------------------------------------


@dataclass
class _Sampler:
    """Samples (Ready objects, VmRSS) every second, in a thread, while a scenario runs."""

    operator: Operator
    ready: Callable[[], int]
    samples: list[tuple[float, int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            memory = self.operator.memory()
            if memory is not None:
                self.samples.append((round(time.monotonic() - self._started, 1), self.ready(), memory.rss_mb))

    def condensed(self, points: int = 12) -> list[dict[str, float]]:
        if not self.samples:
            return []
        step = max(1, len(self.samples) // points)
        chosen = self.samples[::step]
        if chosen[-1] != self.samples[-1]:
            chosen.append(self.samples[-1])
        return [{"seconds": s, "ready": r, "rss_mb": m} for s, r, m in chosen]


def rss(ctx: Context) -> dict[str, Any]:
    namespace, count = ctx.namespace("bench-rss"), ctx.sizes.rss_tokens
    ctx.prepare(namespace)
    names = [f"rss-{index:05d}" for index in range(count)]
    with ctx.watch(namespace) as watch:
        # Its drift listings date the new tokens before the restart, as a day's uptime would have
        operator = ctx.start_operator(namespace, "rss", "--drift-interval", f"{RSS_DRIFT_INTERVAL:g}")
        ctx.warm_up(namespace, watch, operator, keep=True)
        time.sleep(1.0)
        idle = operator.memory()
        cpu = ctx.cpu(operator)
        before, own = apiserver_requests(ctx.plane), _Writes(operator)
        with _Sampler(operator, watch.ready_count) as sampler:
            progress(f"rss: creating {count} ApiTokens")
            started, _ = ctx.create_many(namespace, names, enabled=lambda index: True)
            created = time.monotonic()
            progress(f"rss: {count} created in {created - started:.1f} s; waiting for Ready")
            watch.wait(
                lambda: all(name in watch.ready_at for name in names),
                timeout=max(300.0, count * 0.5),
                what=f"{count} ApiTokens to be Ready",
                check=operator.check_alive,
                report=lambda: (
                    f"  {watch.ready_count(names)}/{count} Ready, "
                    f"RSS {getattr(operator.memory(), 'rss_mb', '?')} MB"
                ),
                every=10.0,
            )
            last_ready = max(watch.ready_at[name] for name in names)
            spent = cpu.spent()
            time.sleep(5.0)  # settle: trailing writes, garbage collection
        memory = operator.memory()
        writes = RequestDelta.between(before, apiserver_requests(ctx.plane))
        written = own.spent()
        if memory is None or idle is None:
            raise BenchmarkError("cannot read the operator's memory from /proc")
        progress(
            f"rss: {count} Ready; RSS {memory.rss_mb} MB, peak {memory.peak_mb} MB (idle {idle.rss_mb} MB)"
        )
        # Restarted over Ready objects as they are after their first listing (a create's answer has no
        # dates; that one-off write is not the restart's)
        undated, _ = _wait_dated(
            watch, operator, names, give_up=time.monotonic() + RSS_DRIFT_INTERVAL * DATING_LISTINGS + 60.0
        )
        if undated:
            progress(f"rss: {len(undated)} ApiToken(s) still undated before the restart, e.g. {undated[:3]}")
        restart = _restart(ctx, namespace, operator, watch, names, seconds=0.0, scenario="rss-restart")
        progress(
            f"rss: restarted over {count}: all resumed after {restart['all_resumed_seconds']} s, "
            f"{restart['kubernetes_writes']} writes, {restart['operator_cpu_ms_per_token']} ms CPU per object"
        )
        ctx.stop_operator(ctx.running[-1])
    return {
        "rss_mb": {
            "tokens": count,
            "peak": memory.peak_mb,
            "current": memory.rss_mb,
            "idle": idle.rss_mb,
            "growth_per_1000_tokens": round((memory.rss_mb - idle.rss_mb) / count * 1000, 1),
            "create_calls_seconds": round(created - started, 1),
            "all_ready_seconds": round(last_ready - started, 1),
            "samples": sampler.condensed(),
            **_per_token(spent, count, operator_writes=written, requests=writes, ours=count),
            "cpu_seconds": spent,
            "restart": restart,
            "undated_before_restart": len(undated),
        }
    }
