"""The targets of the measure issue, checked against a result, as a table for people."""

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


def _by_operation(calls: dict[str, float]) -> str:
    """`list 60, update 0`: calls per operation, largest first ("none" when there were none)."""
    ordered = sorted(calls.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{operation} {number:g}" for operation, number in ordered) or "none"


TARGETS = (
    Target(
        "create -> Ready, p50",
        "<= 50 ms",
        "apply_to_ready_ms",
        "n",
        FULL.latency_tokens,
        _get("apply_to_ready_ms", "p50"),
        lambda r: r["apply_to_ready_ms"]["p50"] <= 50,
        " ms",
    ),
    Target(
        "create -> Ready, p99",
        "<= 250 ms",
        "apply_to_ready_ms",
        "n",
        FULL.latency_tokens,
        _get("apply_to_ready_ms", "p99"),
        lambda r: r["apply_to_ready_ms"]["p99"] <= 250,
        " ms",
    ),
    Target(
        "burst: all Ready after first create",
        "<= 10 s",
        "burst",
        "tokens",
        FULL.burst_tokens,
        _get("burst", "seconds"),
        lambda r: r["burst"]["seconds"] <= 10,
        " s",
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
    Target(
        "burst: Kubernetes writes per token",
        "(report)",
        "burst",
        "tokens",
        FULL.burst_tokens,
        _get("burst", "kubernetes_writes_per_token"),
        None,
    ),
    Target(
        "delete all: revoked and gone",
        "<= 10 s",
        "burst",
        "tokens",
        FULL.burst_tokens,
        _get("burst", "delete_seconds"),
        lambda r: r["burst"]["delete_seconds"] <= 10 and r["burst"]["delete_tokens_left"] == 0,
        " s",
    ),
    Target(
        "drift: list calls",
        "<= 2",
        "drift",
        "tokens",
        FULL.drift_tokens,
        _get("drift", "list_calls"),
        lambda r: r["drift"]["list_calls"] <= 2,
    ),
    Target(
        "drift: one listing (Observer.refresh)",
        "bounded",
        "drift",
        "tokens",
        FULL.drift_tokens,
        _get("drift", "seconds"),
        None,
        " s",
    ),
    Target(
        "restart: creates",
        "0",
        "restart",
        "tokens",
        FULL.burst_tokens,
        _get("restart", "creates"),
        lambda r: r["restart"]["creates"] == 0,
    ),
    Target(
        "restart: Secret writes",
        "0",
        "restart",
        "tokens",
        FULL.burst_tokens,
        _get("restart", "secret_writes"),
        lambda r: r["restart"]["secret_writes"] == 0,
    ),
    Target(
        "restart: Dynatrace calls in first minute",
        "<= 2",
        "restart",
        "tokens",
        FULL.burst_tokens,
        _get("restart", "dynatrace_calls"),
        lambda r: r["restart"]["dynatrace_calls"] <= 2,
    ),
    Target(
        "steady: ApiToken writes per token per hour",
        "<= 1 write/token/hour",
        "steady",
        "tokens",
        FULL.steady_tokens,
        _get("steady", "apitoken_writes_per_token_per_hour"),
        lambda r: r["steady"]["apitoken_writes_per_token_per_hour"] <= 1,
    ),
    Target(
        "steady: Ready objects left undated by listings",
        "0",
        "steady",
        "tokens",
        FULL.steady_tokens,
        _get("steady", "undated_at_start"),
        lambda r: r["steady"]["undated_at_start"] == 0,
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
    Target(
        "steady: operator CPU in the window",
        "(report)",
        "steady",
        "tokens",
        FULL.steady_tokens,
        _get("steady", "operator_cpu_seconds"),
        None,
        " s",
    ),
    Target(
        "operator peak RSS (VmHWM)",
        "<= 200 MB",
        "rss_mb",
        "tokens",
        FULL.rss_tokens,
        _get("rss_mb", "peak"),
        lambda r: r["rss_mb"]["peak"] <= 200,
        " MB",
    ),
)


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(target, wanted, size, measured, met) for each target; "n/a" where the scenario did not run."""
    table = []
    for target in TARGETS:
        section = result.get(target.section)
        if not section:
            error = (result.get("errors") or {}).get(target.section)
            table.append((target.label, target.wanted, "-", "error" if error else "not run", "n/a"))
            continue
        size = section.get(target.size_key) if target.size_key else None
        size_text = "-" if size is None else f"{size:,}"
        smaller = size is not None and target.full_size is not None and size < target.full_size
        if smaller:
            size_text += f" (target {target.full_size:,})"
        if target.section == "restart":
            size_text += f", {section['seconds_observed']:.0f} s"
        if target.section == "steady":
            size_text += f", {section['emulated_minutes']:g} emulated min"
        try:
            measured = f"{target.measured(result)}{target.unit}"
            met = "report" if target.met is None else ("yes" if target.met(result) else "NO")
        except (KeyError, TypeError) as error:
            measured, met = f"missing {error}", "n/a"
        if smaller and target.met is not None:
            met += "*"
        table.append((target.label, target.wanted, size_text, measured, met))
    return table


def format_table(result: dict[str, Any]) -> str:
    header = ("target", "wanted", "size", "measured", "met")
    body = rows(result)
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()

    lines = [line(header), line(tuple("-" * w for w in widths)), *(line(row) for row in body)]
    if any(row[4].endswith("*") for row in body):
        lines.append("* measured at a smaller size than the target's (--quick or a size option): a smoke run")
    return "\n".join(lines)
