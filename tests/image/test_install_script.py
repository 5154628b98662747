"""scripts/image-install.sh, the Dockerfile's one install step, run for real into a temporary PREFIX.

What the image gets is checked here: the runtime dependencies and nothing else, each at its pin in
constraints.txt; no pip, setuptools or test tools; every module byte-compiled with hash-based pycs; the
console script working; every module importing, and the image's command parsing, as UID 65532 on a
read-only root filesystem with the Dockerfile's ENV (see helpers.py for how, and when not).
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import re
import subprocess
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.image.dockerfile import Dockerfile
from tests.image.helpers import INSTALL_SCRIPT, ROOT, UID, Installed, image_env, run, snapshot, writable_dir

PROJECT = "dynatrace-apitoken-operator"
NEVER_INSTALLED = {"pip", "setuptools", "wheel"}

_IMPORT_EVERYTHING = r"""
import importlib, json, os, pkgutil, sys
import apitoken_operator

failed = {}
modules = []
def record(name):
    failed[name] = repr(sys.exc_info()[1])
for info in pkgutil.walk_packages(apitoken_operator.__path__, "apitoken_operator.", onerror=record):
    if info.name == "apitoken_operator.__main__":
        continue  # runs the CLI when imported
    modules.append(info.name)
    try:
        importlib.import_module(info.name)
    except Exception as error:
        failed[info.name] = repr(error)
print(json.dumps({
    "modules": modules,
    "failed": failed,
    "uid": os.getuid(),
    "dont_write_bytecode": sys.dont_write_bytecode,
    "prefix": sys.prefix,
    "home": sorted(os.listdir(os.environ["HOME"])),
}))
"""

_PARSE_COMMAND = r"""
import json, sys
from apitoken_operator.cli import build_parser
argv = json.loads(sys.argv[1])
args = build_parser(argv).parse_args(argv)
print(json.dumps({
    "verb": args.verb,
    "handler": args.handler.__module__,
    "liveness": args.liveness,
    "all_namespaces": args.all_namespaces,
    "namespace": args.namespace,
}))
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def constraints() -> dict[str, str]:
    pins = {}
    for raw in (ROOT / "constraints.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = version.strip()
    return pins


def distributions(installed: Installed) -> dict[str, dict]:
    """name -> {version, requires} for everything in the venv, as its own interpreter sees it."""
    script = (
        "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name']: "
        "{'version': d.version, 'requires': d.requires or []} for d in m.distributions()}))"
    )
    result = subprocess.run(
        [str(installed.prefix / "bin" / "python"), "-c", script], capture_output=True, text=True, check=True
    )
    return {canonical(name): info for name, info in json.loads(result.stdout).items()}


def closure(roots: list[str], installed: dict[str, dict]) -> set[str]:
    """The runtime dependency closure of `roots`, following each installed distribution's metadata."""
    wanted: set[str] = set()
    extras_seen: set[tuple[str, str]] = set()
    queue = [Requirement(r) for r in roots]
    while queue:
        requirement = queue.pop()
        name = canonical(requirement.name)
        extras = set(requirement.extras) | {""}
        if name in wanted and all((name, e) in extras_seen for e in extras):
            continue
        wanted.add(name)
        extras_seen |= {(name, e) for e in extras}
        for line in installed.get(name, {}).get("requires", []):
            dependency = Requirement(line)
            marker = dependency.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras):
                queue.append(dependency)
    return wanted


def test_the_script_refuses_a_relative_or_used_prefix(tmp_path: pathlib.Path) -> None:
    relative = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), "venv"], capture_output=True, text=True, check=False
    )
    assert relative.returncode == 2 and "absolute" in relative.stderr
    (tmp_path / "something").touch()
    used = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert used.returncode == 2 and "not empty" in used.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "something"]


def test_runtime_dependencies_only_each_at_its_pin(installed: Installed) -> None:
    found = distributions(installed)
    project = pyproject()["project"]
    assert found.pop(canonical(PROJECT))["version"] == project["version"]
    pins = constraints()
    unpinned = sorted(name for name in found if name not in pins)
    assert not unpinned, f"installed but not pinned in constraints.txt: {unpinned}"
    off_pin = {n: (info["version"], pins[n]) for n, info in found.items() if info["version"] != pins[n]}
    assert not off_pin, f"installed version differs from constraints.txt (installed, pinned): {off_pin}"
    needed = closure(project["dependencies"], found)
    assert set(found) == needed, (
        f"not needed at run time: {sorted(set(found) - needed)}; missing: {sorted(needed - set(found))}"
    )


def test_no_test_build_or_install_tools(installed: Installed) -> None:
    found = set(distributions(installed))
    optional = pyproject()["project"]["optional-dependencies"]
    tools = {canonical(Requirement(r).name) for extra in optional.values() for r in extra} | NEVER_INSTALLED
    assert not found & tools, f"test/build tools in the image venv: {sorted(found & tools)}"
    binaries = {path.name for path in (installed.prefix / "bin").iterdir()}
    unwanted = {"pip", "pip3", "pytest", "ruff", "mypy", "kubectl", "hypothesis"} & binaries
    assert not unwanted, f"tools in the venv's bin: {sorted(unwanted)}"


def test_everything_byte_compiled_with_unchecked_hash_pycs(installed: Installed) -> None:
    missing, timestamped = [], []
    sources = list((installed.prefix / "lib").rglob("*.py"))
    assert len(sources) > 500
    for source in sources:
        compiled = pathlib.Path(importlib.util.cache_from_source(str(source)))
        if not compiled.exists():
            missing.append(str(source.relative_to(installed.prefix)))
            continue
        flags = int.from_bytes(compiled.read_bytes()[4:8], "little")
        if flags != 0b01:  # bit 0: hash-based; bit 1 (check_source) clear: valid whatever the mtimes
            timestamped.append(str(compiled.relative_to(installed.prefix)))
    assert not missing, f"{len(missing)} modules without a pyc, e.g. {missing[:5]}"
    assert not timestamped, f"{len(timestamped)} pycs are not unchecked-hash, e.g. {timestamped[:5]}"


def test_everything_readable_by_the_image_user(installed: Installed) -> None:
    unreadable = []
    for path in [installed.prefix, *installed.prefix.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        need = 0o005 if path.is_dir() or mode & 0o100 else 0o004
        if mode & need != need:
            unreadable.append(f"{oct(mode)} {path.relative_to(installed.prefix)}")
    assert not unreadable, f"not readable by others (the image runs as {UID}): {unreadable[:10]}"


def test_console_script_runs_read_only_as_the_image_user(
    installed: Installed, dockerfile: Dockerfile
) -> None:
    entrypoint = dockerfile.final.all("ENTRYPOINT")[-1].exec_form
    assert entrypoint == ["apitoken-operator"]
    before = snapshot(installed.prefix)
    for arguments in (["--help"], ["run", "--help"], ["--version"]):
        writable = writable_dir(installed.base)
        env = image_env(dockerfile, prefix=installed.prefix, writable=writable)
        result = run(installed.sandbox, [*entrypoint, *arguments], env=env, writable=writable)
        assert result.returncode == 0, f"{arguments} ({installed.sandbox.describe()}):\n{result.stderr}"
        assert not result.stderr, result.stderr
        if arguments == ["run", "--help"]:
            assert "--liveness URL" in result.stdout
        if arguments == ["--help"]:  # only the verbs that work in the image: no developer tools
            assert re.findall(r"^    (\S+)\s", result.stdout, flags=re.M) == ["run", "export"], result.stdout
    assert snapshot(installed.prefix) == before


def test_no_emulator_or_dev_tools_installed(installed: Installed) -> None:
    """The emulator and the dev tools are their own distribution (dev/pyproject.toml), never the image's."""
    (site,) = (installed.prefix / "lib").glob("python3*/site-packages")
    assert (site / "apitoken_operator" / "runner.py").is_file()  # the search below looks in the right place
    dev_packages = sorted(
        p.name for p in site.iterdir() if p.name.split(".")[0] in {"apitoken_emulator", "apitoken_devenv"}
    )
    assert not dev_packages, f"developer packages in the image venv: {dev_packages}"
    dev_paths = sorted(
        str(path.relative_to(site))
        for path in (site / "apitoken_operator").rglob("*")
        if {"emulator", "devenv"} & {part.split(".")[0] for part in path.relative_to(site).parts}
    )
    assert not dev_paths, f"emulator or dev tool files in the operator's package: {dev_paths}"
    aiohttp_servers = sorted(
        str(source.relative_to(site))
        for source in (site / "apitoken_operator").rglob("*.py")
        if "from aiohttp import web" in source.read_text()
    )
    assert not aiohttp_servers, (
        f"aiohttp servers (the emulator's) in the operator's package: {aiohttp_servers}"
    )
    (record,) = site.glob("dynatrace_apitoken_operator-*.dist-info/RECORD")
    top_level = {line.split(",")[0].split("/")[0] for line in record.read_text().splitlines()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"apitoken_operator", ".."}, (
        top_level
    )


@pytest.mark.parametrize(
    ("arguments", "verb"),
    [
        (["emulator", "--port", "0", "--admin-token-file", "/tmp/admin.token"], "emulator"),
        (["demo"], "demo"),
        (["dev", "cluster", "--dir", "/tmp/cp"], "dev cluster"),
    ],
)
def test_the_developer_verbs_say_they_are_not_installed(
    installed: Installed, dockerfile: Dockerfile, arguments: list[str], verb: str
) -> None:
    entrypoint = dockerfile.final.all("ENTRYPOINT")[-1].exec_form
    assert entrypoint is not None
    writable = writable_dir(installed.base)
    env = image_env(dockerfile, prefix=installed.prefix, writable=writable)
    result = run(installed.sandbox, [*entrypoint, *arguments], env=env, writable=writable)
    assert result.returncode == 2, f"({installed.sandbox.describe()}):\n{result.stderr}"
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"apitoken-operator {verb}: a developer tool, not installed here (dynatrace-apitoken-operator-dev; "
        "the operator's image carries only the operator); from a checkout: pip install -e ./dev"
    ]


def test_every_module_imports_read_only_as_the_image_user(
    installed: Installed, dockerfile: Dockerfile
) -> None:
    writable = writable_dir(installed.base)
    env = image_env(dockerfile, prefix=installed.prefix, writable=writable)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    before = snapshot(installed.prefix)
    result = run(
        installed.sandbox, ["python", "-c", _IMPORT_EVERYTHING], env=env, writable=writable, timeout=120
    )
    assert result.returncode == 0, f"({installed.sandbox.describe()}):\n{result.stderr}"
    report = json.loads(result.stdout)
    assert not report["failed"], report["failed"]
    assert len(report["modules"]) > 40  # the operator alone (the emulator and dev tools are not in it)
    assert {"apitoken_operator.runner", "apitoken_operator.handlers", "apitoken_operator.metrics"} <= set(
        report["modules"]
    )
    assert report["prefix"] == str(installed.prefix)
    assert report["dont_write_bytecode"] is True
    assert report["home"] == [], "importing wrote into HOME"
    if installed.sandbox.user is not None:
        assert report["uid"] == UID
    assert snapshot(installed.prefix) == before, "importing changed the venv"


def test_the_sandbox_really_is_read_only(installed: Installed, dockerfile: Dockerfile) -> None:
    if not installed.sandbox.read_only:
        pytest.skip(f"no mount namespace here ({installed.sandbox.describe()}); the snapshot checks remain")
    writable = writable_dir(installed.base)
    env = image_env(dockerfile, prefix=installed.prefix, writable=writable)
    probe = (
        f'touch "{installed.prefix}/x" 2>/dev/null && exit 3; touch /x 2>/dev/null && exit 4; '
        f'touch "{installed.base}/x" 2>/dev/null && exit 5; touch "{writable}/x"'
    )
    result = run(installed.sandbox, ["sh", "-c", probe], env=env, writable=writable)
    assert result.returncode == 0, (result.returncode, result.stderr)


def test_the_image_command_is_accepted(installed: Installed, dockerfile: Dockerfile) -> None:
    command = dockerfile.final.all("CMD")[-1].exec_form
    assert command is not None
    writable = writable_dir(installed.base)
    env = image_env(dockerfile, prefix=installed.prefix, writable=writable)
    result = run(
        installed.sandbox, ["python", "-c", _PARSE_COMMAND, json.dumps(command)], env=env, writable=writable
    )
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)
    liveness = command[command.index("--liveness") + 1]
    assert parsed == {
        "verb": "run",
        "handler": "apitoken_operator.runner",
        "liveness": liveness,
        "all_namespaces": True,
        "namespace": [],
    }
