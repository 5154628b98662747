"""`python -m benchmarks`: the operator's performance targets, measured end to end on this machine.

    python -m benchmarks --json results.json            # the full run (~25 min on 2 cores)
    python -m benchmarks --quick --json quick.json      # a smoke run at small sizes (~3 min)
    python -m benchmarks --compare main --json ab.json  # main's operator and this tree's, side by side
    python -m benchmarks --quick --profile --workdir w  # a py-spy profile of each operator run, in w/

Run from the repository root with the project's venv (.venv/bin/python), on an otherwise idle machine.

`--compare REF` runs every scenario twice on the same control plane and emulator: first with REF's
operator package (extracted with `git archive`, put first on the operator's PYTHONPATH), then with this
tree's, each in namespaces of its own; the table shows both. The benchmark itself, the emulator and the
control plane are this tree's either way.

Starts one local control plane (with the CRDs), the Tokens API emulator as a subprocess (with
--emulator-profile realistic: from its realistic fault profile), and for each
scenario a namespace with a connection Secret and the operator as its own process watching only that
namespace (log in the work folder, no --verbose). Prints progress on stderr, then a table of the
targets on stdout, and writes the JSON file. Everything started is stopped at the end, also on Ctrl-C,
SIGTERM or an error. See docs/performance.md for the method.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from apitoken_devenv.controlplane import load_yaml_documents, running_control_plane
from apitoken_devenv.paths import default_crd_files
from benchmarks import profiling, scenarios
from benchmarks.harness import (
    BenchmarkError,
    Emulator,
    checkout,
    commit,
    install_finalizer_policy,
    machine,
    progress,
    this_tree,
)
from benchmarks.report import format_table

SCENARIOS: dict[str, tuple[str, Callable[[scenarios.Context], dict[str, Any]]]] = {
    "latency": ("apply_to_ready_ms", scenarios.apply_to_ready),
    "burst": ("burst", scenarios.burst_restart_delete),  # also fills "restart"
    "rss": ("rss_mb", scenarios.rss),
    "steady": ("steady", scenarios.steady),
    "drift": ("drift", scenarios.drift),  # last: it leaves its tokens in the emulator
}
#: scenarios that leave their ApiTokens behind (their operator stopped): their tokens are revoked after
#: them, so that no later scenario's (or variant's) drift listings read them too
LEAVE_TOKENS = frozenset({"rss", "steady"})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=pathlib.Path, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="a smoke run at small sizes (~3 minutes)")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (burst includes restart and delete; "
        "steady is Ready tokens in use over emulated time)",
    )
    sizes = parser.add_argument_group("sizes (defaults: the issue's; --quick lowers some)")
    sizes.add_argument("--latency-tokens", type=int, help="ApiTokens created one after another")
    sizes.add_argument("--burst-tokens", type=int, help="ApiTokens created at once (half enabled)")
    sizes.add_argument("--restart-seconds", type=float, help="how long the restarted operator is watched")
    sizes.add_argument("--drift-tokens", type=int, help="tokens put into the emulator for the drift check")
    sizes.add_argument("--rss-tokens", type=int, help="ApiTokens Ready when the operator's RSS is read")
    sizes.add_argument("--steady-tokens", type=int, help="Ready ApiTokens, all in use, in the steady state")
    sizes.add_argument("--steady-seconds", type=float, help="real seconds the steady state is measured")
    sizes.add_argument(
        "--steady-speed",
        type=float,
        help="how many times faster than real time the emulator clock runs in the steady state (10); "
        "the operator's drift interval is 60 emulated seconds, i.e. 60/speed real ones",
    )
    sizes.add_argument(
        "--steady-last-used-interval",
        type=float,
        help="the operator's --last-used-interval in the steady state (3600), in emulated seconds: "
        "passed unscaled, since the operator compares it with the emulator clock's lastUsedDate values",
    )
    parser.add_argument(
        "--emulator-profile",
        choices=("realistic",),
        default=None,
        help="start the emulator with --profile PROFILE (default: none, every fault off); recorded in "
        "the JSON as emulator_profile, with the emulator's fault settings as emulator_faults",
    )
    parser.add_argument(
        "--operator-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to every `apitoken-operator run`, e.g. --operator-arg=--events=warnings "
        "(recorded in the JSON as operator_args)",
    )
    parser.add_argument(
        "--no-admission-finalizer",
        dest="admission_finalizer",
        action="store_false",
        help="leave out the MutatingAdmissionPolicy that puts the operator's finalizer on new ApiTokens "
        "(the chart installs it on Kubernetes 1.36+; without it the operator adds the finalizer itself, "
        "one write more per ApiToken, as on older clusters); recorded as admission_finalizer",
    )
    parser.add_argument(
        "--compare",
        metavar="REF",
        help="also run every scenario with the operator of git REF (e.g. main, HEAD~3), before this tree's, "
        "on the same control plane; the JSON holds REF's sections under compare",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record a py-spy profile of every operator process (collapsed stacks and a top-functions "
        "summary beside its log; needs the bench extra); implies keeping the work folder",
    )
    parser.add_argument(
        "--workdir",
        type=pathlib.Path,
        help="keep the control plane's and the operators' logs here (default: a temporary folder, "
        "removed after a clean run)",
    )
    return parser.parse_args(argv)


def _sizes(args: argparse.Namespace) -> scenarios.Sizes:
    base = scenarios.QUICK if args.quick else scenarios.FULL
    changes = {
        key: getattr(args, key)
        for key in (
            "latency_tokens",
            "burst_tokens",
            "restart_seconds",
            "drift_tokens",
            "rss_tokens",
            "steady_tokens",
            "steady_seconds",
            "steady_speed",
            "steady_last_used_interval",
        )
        if getattr(args, key) is not None
    }
    return dataclasses.replace(base, **changes)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run(args: argparse.Namespace) -> tuple[dict[str, Any], pathlib.Path]:
    wanted = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    sizes = _sizes(args)
    if args.profile:
        profiling.py_spy()  # fail now, not after the control plane started
    workdir = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="apitoken-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    variants = [this_tree()]
    if args.compare:
        variants.insert(0, checkout(args.compare, workdir / "compare"))
    result: dict[str, Any] = {
        "quick": args.quick,
        "sizes": dataclasses.asdict(sizes),
        "commit": commit(),
        "errors": {},
    }
    started = time.monotonic()
    crds = load_yaml_documents(default_crd_files())
    with running_control_plane(workdir=workdir / "controlplane", crds=crds, progress=progress) as plane:
        result["machine"] = machine()
        result["admission_finalizer"] = args.admission_finalizer
        if args.admission_finalizer:
            install_finalizer_policy(plane)
            progress("the admission finalizer policy applies to new ApiTokens")
        emulator = Emulator(workdir, profile=args.emulator_profile)
        progress(f"emulator at {emulator.base_url} (profile {args.emulator_profile or 'none'})")
        result["emulator_profile"] = args.emulator_profile
        result["emulator_faults"] = emulator.faults()
        context = scenarios.Context(
            plane=plane,
            emulator=emulator,
            sizes=sizes,
            workdir=workdir,
            operator_args=args.operator_arg,
            profile=args.profile,
        )
        result["operator_args"] = args.operator_arg
        result["variant"] = variants[-1].label
        if args.compare:
            result["compare"] = {
                "variant": variants[0].label,
                "sha": variants[0].sha,
                # a ref from before the chart's admissionFinalizer runs without it, as it was installed
                "admission_finalizer": args.admission_finalizer and variants[0].finalizer_policy,
                "errors": {},
            }
        try:
            for name in wanted:
                for variant in variants:
                    # this tree's sections at the top (as without --compare), the ref's under compare
                    into = result if variant is variants[-1] else result["compare"]
                    progress(f"== {name}" + (f" ({variant.label})" if args.compare else ""))
                    context.variant = variant
                    _run_scenario(context, name, into)
        finally:
            context.stop_all()
            emulator.stop()
        result["operators"] = [dataclasses.asdict(r) for r in context.runs]
    result["total_seconds"] = round(time.monotonic() - started, 1)
    return result, workdir


def _run_scenario(context: scenarios.Context, name: str, into: dict[str, Any]) -> None:
    """One scenario for the context's variant, its sections (or its error) into `into`."""
    key, scenario = SCENARIOS[name]
    emulator = context.emulator
    before = emulator.token_ids() if name in LEAVE_TOKENS else None
    try:
        into.update(scenario(context))
    except BenchmarkError as error:
        progress(f"{name} failed: {error}")
        into["errors"][key] = str(error)
        if name == "burst":
            into["errors"]["restart"] = str(error)
        context.stop_all()
    if before is not None:
        context.stop_all()
        revoked = emulator.revoke_tokens(emulator.token_ids() - before)
        progress(f"{name}: revoked the {revoked} tokens it left behind")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result, workdir = run(args)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    label = "SMOKE RUN (--quick): small sizes on this machine, not the final figures" if args.quick else ""
    print()
    if label:
        print(label)
    print(format_table(result))
    failed = bool(result["errors"]) or bool(result.get("compare", {}).get("errors"))
    if args.workdir is None and not failed and not args.profile:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs kept in {workdir}", file=sys.stderr)
    if args.json:
        print(f"results written to {args.json}", file=sys.stderr)
    return 1 if failed else 0
