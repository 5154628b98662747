"""The console script's developer verbs without the developer tools' distribution, as in the image.

The tools are hidden for real, not patched out: the interpreter starts without site-packages (`-S`) and
with only the operator's source directory on its path, so neither `apitoken_emulator` nor
`apitoken_devenv` can be found (tests/image/ checks the same in the image's own install).
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

from apitoken_operator import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]
OPERATOR_SOURCE = ROOT / "operator"


def _cli(*argv: str, path: tuple[pathlib.Path, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"}}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (OPERATOR_SOURCE, *path))
    return subprocess.run(
        [sys.executable, "-S", "-m", "apitoken_operator", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("argv", "verb"),
    [
        (["emulator", "--port", "0", "--admin-token-file", "/tmp/admin.token"], "emulator"),
        (["emulator", "--help"], "emulator"),
        (["demo"], "demo"),
        (["dev", "cluster", "--dir", "/tmp/cp"], "dev cluster"),
        (["dev", "cluster", "--help"], "dev cluster"),
        (["dev"], "dev"),
        (["dev", "--help"], "dev"),
    ],
)
def test_a_developer_verb_without_the_tools_exits_2_saying_how_to_install_them(
    argv: list[str], verb: str
) -> None:
    result = _cli(*argv)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback, no usage
    assert result.stderr.startswith(f"apitoken-operator {verb}: a developer tool, not installed here")
    assert result.stderr.rstrip().endswith("from a checkout: pip install -e ./dev")


def offered_verbs(help_text: str) -> list[str]:
    """The verbs `--help` lists (argparse indents them by four spaces under VERB)."""
    return re.findall(r"^    (\S+)\s", help_text, flags=re.M)


def test_without_the_tools_help_offers_only_what_works() -> None:
    result = _cli("--help")
    assert result.returncode == 0, result.stderr
    assert offered_verbs(result.stdout) == ["run", "export"]
    unknown = _cli("no-such-verb")
    assert unknown.returncode == 2
    assert "invalid choice: 'no-such-verb' (choose from 'run', 'export')" in unknown.stderr


def test_with_the_tools_help_offers_them_too() -> None:
    """The checkout's venv has dev/ installed (scripts/setup.sh): there the tools are listed."""
    result = subprocess.run(
        [sys.executable, "-m", "apitoken_operator", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert offered_verbs(result.stdout) == ["run", "export", "emulator", "demo", "dev"]
    dev = subprocess.run(
        [sys.executable, "-m", "apitoken_operator", "dev", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert dev.returncode == 0, dev.stderr
    assert offered_verbs(dev.stdout) == ["cluster"]


def test_a_dev_install_missing_a_dependency_is_shown_whole(tmp_path: pathlib.Path) -> None:
    """Only the tools' own packages being absent means "not installed"; anything else is a real error."""
    package = tmp_path / "apitoken_emulator"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "command.py").write_text("import a_dependency_nobody_installed\n")
    result = _cli("emulator", path=(tmp_path,))
    assert result.returncode == 1
    assert "No module named 'a_dependency_nobody_installed'" in result.stderr
    assert "developer tool" not in result.stderr


def test_the_operator_package_imports_nothing_from_the_dev_tools() -> None:
    """The dependency runs one way: the tools import the operator, never the reverse (the cli names
    their modules as strings and imports them only for their verbs)."""
    found = []
    for source in sorted((OPERATOR_SOURCE / "apitoken_operator").rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [
                f"{source.relative_to(ROOT)}:{node.lineno} {name}"
                for name in names
                if name.partition(".")[0] in cli.DEV_PACKAGES
            ]
    assert not found, found
    dev_modules = {module for module, _ in [*cli.VERBS.values(), *cli.DEV_VERBS.values()]} - {
        "apitoken_operator.runner",
        "apitoken_operator.export",
    }
    assert {name.partition(".")[0] for name in dev_modules} == cli.DEV_PACKAGES
    dev_project = tomllib.loads((ROOT / "dev" / "pyproject.toml").read_text())
    included = dev_project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {name.partition(".")[0] for name in included} == cli.DEV_PACKAGES
