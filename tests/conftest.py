"""Shared fixtures live in tests/fixtures/, one module per concern, loaded as plugins."""

import shutil
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.leaks",
    "tests.fixtures.cluster",
    "tests.fixtures.emulator",
    "tests.fixtures.operator",
    "tests.fixtures.gitops",
    "tests.fixtures.faults",
]


#: The reference files beside the repository (sessions and CI have them; a user's clone does not).
SHARED_DYNATRACE = Path(__file__).resolve().parents[1].parent / "shared" / "dynatrace"


#: The repository's git history (a clone has it; a tarball of the tree does not).
REPOSITORY = Path(__file__).resolve().parents[1]


def _unavailable() -> dict[str, str]:
    """marker -> why its tests cannot run here (only the markers whose need is absent)."""
    missing = {}
    if not SHARED_DYNATRACE.is_dir():
        missing["needs_shared"] = (
            f"{SHARED_DYNATRACE} is absent (the reference files sit beside the repository in sessions and CI)"
        )
    if shutil.which("git") is None or not (REPOSITORY / ".git").exists():
        missing["needs_git_history"] = f"{REPOSITORY} has no git history (a tarball, not a clone)"
    return missing


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip: a skip is not a pass) the tests whose need is absent, and say so."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for marker, why in _unavailable().items():
        dropped = [item for item in items if item.get_closest_marker(marker)]
        if not dropped:
            continue
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker(marker)]
        if reporter is not None:
            reporter.write_line(f"{marker}: {len(dropped)} test(s) deselected: {why}")
