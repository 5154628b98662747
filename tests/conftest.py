"""Shared fixtures live in tests/fixtures/, one module per concern, loaded as plugins."""

pytest_plugins = [
    "tests.fixtures.leaks",
    "tests.fixtures.cluster",
    "tests.fixtures.emulator",
    "tests.fixtures.operator",
    "tests.fixtures.gitops",
    "tests.fixtures.faults",
]
