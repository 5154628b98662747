"""Shared fixtures live in tests/fixtures/, one module per concern, loaded as plugins."""

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip: a skip is not a pass) the `needs_shared` tests when ../shared is absent."""
    if SHARED_DYNATRACE.is_dir():
        return
    shared = [item for item in items if item.get_closest_marker("needs_shared")]
    if not shared:
        return
    config.hook.pytest_deselected(items=shared)
    items[:] = [item for item in items if not item.get_closest_marker("needs_shared")]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"needs_shared: {len(shared)} test(s) deselected: {SHARED_DYNATRACE} is absent "
            "(the reference files sit beside the repository in sessions and CI)"
        )
