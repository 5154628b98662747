"""The benchmark's own arithmetic: a profile's summary, the targets table with --compare, a variant's path.

The scenarios themselves need the control plane and minutes; these are what a reader of their output
relies on being right.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from benchmarks import profiling
from benchmarks.harness import Variant
from benchmarks.report import format_table, rows


def test_a_profile_summary_counts_own_and_inclusive_samples_per_function(tmp_path: pathlib.Path) -> None:
    collapsed = tmp_path / "profile.txt"
    collapsed.write_text(
        'process 1:"python";main (apitoken_operator/cli.py:10);reconcile (apitoken_operator/r.py:5) 30\n'
        'process 1:"python";main (apitoken_operator/cli.py:11);reconcile (apitoken_operator/r.py:7);'
        "loads (/usr/lib/python3.11/json/__init__.py:346) 10\n"
        # recursion: a function twice on one stack is counted once in its inclusive time
        'process 1:"python";main (apitoken_operator/cli.py:10);main (apitoken_operator/cli.py:10) 60\n'
    )
    summary = profiling.summarize(collapsed)
    own, inclusive = summary.split("\n\n")[:2]
    assert "(100 samples at 100/s = 1.0 s on CPU)" in own
    assert "60.0%      60  main (apitoken_operator/cli.py)" in own  # the line numbers folded
    assert "30.0%      30  reconcile (apitoken_operator/r.py)" in own
    assert "10.0%      10  loads (lib/python3.11/json/__init__.py)" in own
    assert "100.0%     100  main (apitoken_operator/cli.py)" in inclusive
    assert "40.0%      40  reconcile (apitoken_operator/r.py)" in inclusive


def test_an_empty_profile_says_so(tmp_path: pathlib.Path) -> None:
    collapsed = tmp_path / "empty.txt"
    collapsed.write_text("")
    assert profiling.summarize(collapsed) == "empty.txt: no samples\n"


def _burst(cpu_ms: float, writes: float, seconds: float) -> dict[str, Any]:
    return {
        "tokens": 1000,
        "seconds": seconds,
        "dynatrace_calls": 2000,
        "dynatrace_calls_expected": 2000,
        "operator_cpu_ms_per_token": cpu_ms,
        "kube_writes_per_token": writes,
        "delete_seconds": 10.0,
        "delete_tokens_left": 0,
        "delete_operator_cpu_ms_per_token": 4.0,
        "delete_kube_writes_per_token": 2.0,
    }


def _row(table: list[tuple[str, ...]], label: str) -> tuple[str, ...]:
    return next(row for row in table if row[0] == label)


def test_the_table_judges_this_trees_figures_and_shows_the_refs_beside_them() -> None:
    result = {
        "variant": "this tree (abc1234)",
        "burst": _burst(cpu_ms=5.5, writes=4.0, seconds=12.0),
        "errors": {},
        "compare": {"variant": "main (0123456)", "burst": _burst(21.0, 5.0, 30.0), "errors": {}},
    }
    table = rows(result)
    assert _row(table, "burst: operator CPU per created token") == (
        "burst: operator CPU per created token",
        "<= 6 ms",
        "1,000",
        "21.0 ms",
        "5.5 ms",
        "yes",
    )
    assert _row(table, "burst: Kubernetes writes per created token")[3:] == ("5.0", "4.0", "yes")
    # a scenario neither ran
    assert _row(table, "create -> Ready, p50")[3:] == ("not run", "not run", "n/a")
    text = format_table(result)
    assert text.splitlines()[0].split()[3:7] == ["main", "(0123456)", "this", "tree"]
    assert "main (0123456) ran first" in text


def test_a_target_missed_or_measured_small_is_marked() -> None:
    small = _burst(cpu_ms=7.0, writes=5.0, seconds=3.0) | {"tokens": 200}
    table = rows({"burst": small, "errors": {}})
    assert _row(table, "burst: operator CPU per created token")[2:] == ("200 (target 1,000)", "7.0 ms", "NO*")
    assert _row(table, "burst: all Ready after first create")[4] == "yes*"


def test_a_failed_scenario_is_an_error_not_a_figure() -> None:
    table = rows({"errors": {"burst": "the operator exited"}})
    assert _row(table, "burst: operator CPU per created token")[3:] == ("error", "n/a")


@pytest.mark.parametrize("inherited", [None, "/somewhere"])
def test_a_refs_operator_comes_first_on_the_path(
    monkeypatch: pytest.MonkeyPatch, inherited: str | None
) -> None:
    if inherited is None:
        monkeypatch.delenv("PYTHONPATH", raising=False)
    else:
        monkeypatch.setenv("PYTHONPATH", inherited)
    variant = Variant(
        label="main", sha="0" * 40, python_path=pathlib.Path("/tmp/ref/operator"), suffix="-ref"
    )
    expected = "/tmp/ref/operator" + (f":{inherited}" if inherited else "")
    assert variant.env() == {"PYTHONPATH": expected}
    assert Variant(label="this tree", sha=None).env() == {}
