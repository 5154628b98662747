"""The performance targets (the measure issue's, tightened by the CPU-per-token issue), checked against a
result, as a table for people; with --compare, the ref's figures beside this tree's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.scenarios import FULL


@dataclass(frozen=True)
class Target:
    label: str
    wanted: str
    section: str
    #: the size the issue states the target at (None: no size)
    size_key: str | None
    full_size: int | float | None
    measured: Callable[[dict[str, Any]], Any]
    met: Callable[[dict[str, Any]], bool] | None
    unit: str = ""


def _get(section: str, key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda result: result[section][key]


def _path(section: str, *keys: str) -> Callable[[dict[str, Any]], Any]:
    def measured(result: dict[str, Any]) -> Any:
        value: Any = result[section]
        for key in keys:
            value = value[key]
        return value

    return measured


def _at_most(
    label: str,
    limit: float,
    section: str,
    *keys: str,
    unit: str = "",
    size_key: str | None = "tokens",
    full_size: int | float | None = None,
) -> Target:
    measured = _path(section, *keys)
    return Target(
        label,
        f"<= {limit:g}{unit}",
        section,
        size_key,
        full_size,
        measured,
        lambda result: measured(result) is not None and measured(result) <= limit,
        unit,
    )


def _report(
    label: str,
    section: str,
    *keys: str,
    unit: str = "",
    size_key: str | None = "tokens",
    full_size: int | None = None,
) -> Target:
    return Target(label, "(report)", section, size_key, full_size, _path(section, *keys), None, unit)


def _by_operation(calls: dict[str, float]) -> str:
    """`list 60, update 0`: calls per operation, largest first ("none" when there were none)."""
    ordered = sorted(calls.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{operation} {number:g}" for operation, number in ordered) or "none"


TARGETS = (
    _at_most(
        "create -> Ready, p50",
        30,
        "apply_to_ready_ms",
        "p50",
        unit=" ms",
        size_key="n",
        full_size=FULL.latency_tokens,
    ),
    _at_most(
        "create -> Ready, p99",
        100,
        "apply_to_ready_ms",
        "p99",
        unit=" ms",
        size_key="n",
        full_size=FULL.latency_tokens,
    ),
    _report(
        "one by one: operator CPU per created token",
        "apply_to_ready_ms",
        "operator_cpu_ms_per_token",
        unit=" ms",
        size_key="n",
        full_size=FULL.latency_tokens,
    ),
    _report(
        "one by one: Kubernetes writes per created token",
        "apply_to_ready_ms",
        "kube_writes_per_token",
        size_key="n",
        full_size=FULL.latency_tokens,
    ),
    _at_most(
        "burst: all Ready after first create", 20, "burst", "seconds", unit=" s", full_size=FULL.burst_tokens
    ),
    Target(
        "burst: Dynatrace calls (2/token: create, rename)",
        "= expected",
        "burst",
        "tokens",
        FULL.burst_tokens,
        lambda r: f"{r['burst']['dynatrace_calls']} (expected {r['burst']['dynatrace_calls_expected']})",
        lambda r: r["burst"]["dynatrace_calls"] <= r["burst"]["dynatrace_calls_expected"],
    ),
    _at_most(
        "burst: operator CPU per created token",
        6,
        "burst",
        "operator_cpu_ms_per_token",
        unit=" ms",
        full_size=FULL.burst_tokens,
    ),
    _at_most(
        "burst: Kubernetes writes per created token",
        4.0,
        "burst",
        "kube_writes_per_token",
        full_size=FULL.burst_tokens,
    ),
    Target(
        "delete all: revoked and gone",
        "<= 12 s",
        "burst",
        "tokens",
        FULL.burst_tokens,
        _get("burst", "delete_seconds"),
        lambda r: r["burst"]["delete_seconds"] <= 12 and r["burst"]["delete_tokens_left"] == 0,
        " s",
    ),
    _at_most(
        "delete all: operator CPU per deleted token",
        5,
        "burst",
        "delete_operator_cpu_ms_per_token",
        unit=" ms",
        full_size=FULL.burst_tokens,
    ),
    _at_most(
        "delete all: Kubernetes writes per deleted token",
        2.0,
        "burst",
        "delete_kube_writes_per_token",
        full_size=FULL.burst_tokens,
    ),
    _at_most("drift: list calls", 2, "drift", "list_calls", full_size=FULL.drift_tokens),
    _report(
        "drift: one listing (Observer.refresh)", "drift", "seconds", unit=" s", full_size=FULL.drift_tokens
    ),
    _at_most("restart: creates", 0, "restart", "creates", full_size=FULL.burst_tokens),
    _at_most("restart: Secret writes", 0, "restart", "secret_writes", full_size=FULL.burst_tokens),
    _at_most(
        "restart: Dynatrace calls in first minute",
        2,
        "restart",
        "dynatrace_calls",
        full_size=FULL.burst_tokens,
    ),
    _report(  # right after the burst, before any listing dated them: one status write per object
        "restart, undated: operator CPU per resumed token",
        "restart",
        "operator_cpu_ms_per_token",
        unit=" ms",
        full_size=FULL.burst_tokens,
    ),
    _at_most(
        "restart 10,000: all resumed",
        30,
        "rss_mb",
        "restart",
        "all_resumed_seconds",
        unit=" s",
        full_size=FULL.rss_tokens,
    ),
    _at_most(
        "restart 10,000: Kubernetes writes",
        0,
        "rss_mb",
        "restart",
        "kube_writes",
        full_size=FULL.rss_tokens,
    ),
    _at_most(
        "restart 10,000: operator CPU per resumed token",
        1,
        "rss_mb",
        "restart",
        "operator_cpu_ms_per_token",
        unit=" ms",
        full_size=FULL.rss_tokens,
    ),
    _at_most(
        "steady: ApiToken writes per token per hour",
        1,
        "steady",
        "apitoken_writes_per_token_per_hour",
        unit=" write/token/hour",
        full_size=FULL.steady_tokens,
    ),
    _at_most(
        "steady: Ready objects left undated by listings",
        0,
        "steady",
        "undated_at_start",
        full_size=FULL.steady_tokens,
    ),
    Target(
        "steady: Dynatrace calls per hour",
        "(report)",
        "steady",
        "tokens",
        FULL.steady_tokens,
        lambda r: _by_operation(r["steady"]["dynatrace_calls_per_hour_by_operation"]),
        None,
    ),
    _report(
        "steady: operator CPU in the window",
        "steady",
        "operator_cpu_seconds",
        unit=" s",
        full_size=FULL.steady_tokens,
    ),
    _at_most(
        "operator peak RSS (VmHWM), creating", 150, "rss_mb", "peak", unit=" MB", full_size=FULL.rss_tokens
    ),
    _at_most(
        "operator peak RSS (VmHWM), restarted",
        150,
        "rss_mb",
        "restart",
        "peak_rss_mb",
        unit=" MB",
        full_size=FULL.rss_tokens,
    ),
)


def _measure(target: Target, result: dict[str, Any]) -> tuple[str, str]:
    """(measured, met) for one result, or why there is none."""
    section = result.get(target.section)
    if not section:
        error = (result.get("errors") or {}).get(target.section)
        return ("error" if error else "not run", "n/a")
    try:
        measured = f"{target.measured(result)}{target.unit}"
        met = "report" if target.met is None else ("yes" if target.met(result) else "NO")
    except (KeyError, TypeError) as error:
        return (f"missing {error}", "n/a")
    return measured, met


def rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """(target, wanted, size, [the ref's measured,] measured, met) for each target; "not run" where the
    scenario did not run."""
    compare = result.get("compare")
    table = []
    for target in TARGETS:
        section = result.get(target.section) or {}
        size = section.get(target.size_key) if target.size_key else None
        size_text = "-" if size is None else f"{size:,}"
        smaller = size is not None and target.full_size is not None and size < target.full_size
        if smaller:
            size_text += f" (target {target.full_size:,})"
        if target.section == "restart" and "seconds_observed" in section:
            size_text += f", {section['seconds_observed']:.0f} s"
        if target.section == "steady" and "emulated_minutes" in section:
            size_text += f", {section['emulated_minutes']:g} emulated min"
        measured, met = _measure(target, result)
        if smaller and target.met is not None and met in ("yes", "NO"):
            met += "*"
        before = (_measure(target, compare)[0],) if compare is not None else ()
        table.append((target.label, target.wanted, size_text, *before, measured, met))
    return table


def format_table(result: dict[str, Any]) -> str:
    compare = result.get("compare")
    header: tuple[str, ...] = ("target", "wanted", "size", "measured", "met")
    if compare is not None:
        header = ("target", "wanted", "size", compare["variant"], result.get("variant", "this tree"), "met")
    body = rows(result)
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()

    lines = [line(header), line(tuple("-" * w for w in widths)), *(line(row) for row in body)]
    if any(row[-1].endswith("*") for row in body):
        lines.append("* measured at a smaller size than the target's (--quick or a size option): a smoke run")
    if compare is not None:
        lines.append(f"met: this tree's figure; {compare['variant']} ran first, in the same control plane")
    return "\n".join(lines)
