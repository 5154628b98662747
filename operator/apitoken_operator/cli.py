"""The `apitoken-operator` console script: one verb per subcommand, each defined next to what it runs.

Every verb lives in its own module exposing `add_arguments(parser)` and `main(args) -> int`, so this
file only wires them together and imports a verb's dependencies only when that verb runs.

`emulator`, `demo` and `dev cluster` are developer tools from another distribution of this repository
(dev/pyproject.toml), absent from the image: without it they are not offered (`--help` does not list
them), invoked anyway they exit 2 saying so, and the operator package imports nothing from it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

from apitoken_operator.version import __version__

#: verb -> (module, one-line help). `dev` has its own sub-verbs.
VERBS: dict[str, tuple[str, str]] = {
    "run": ("apitoken_operator.runner", "run the operator"),
    "export": ("apitoken_operator.export", "write ApiToken manifests that adopt an environment's tokens"),
    "emulator": ("apitoken_emulator.command", "run the local Dynatrace Tokens API v2 emulator"),
    "demo": (
        "apitoken_devenv.demo",
        "start a local cluster, emulator and operator; reconcile a sample",
    ),
}
DEV_VERBS: dict[str, tuple[str, str]] = {
    "cluster": (
        "apitoken_devenv.command",
        "run the local Kubernetes control plane in the foreground",
    ),
}
#: The top-level packages of the developer tools' distribution (dev/pyproject.toml).
DEV_PACKAGES = frozenset({"apitoken_emulator", "apitoken_devenv"})
DEV_DISTRIBUTION = "dynatrace-apitoken-operator-dev"


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apitoken-operator", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    # Only the verb being run is imported, so `emulator` does not pay for kopf and vice versa.
    chosen = argv[0] if argv else None
    for verb, (module_name, help_text) in VERBS.items():
        if verb != chosen and not installed(module_name):
            continue  # a developer tool that is not here is not offered (but says so when invoked)
        sub = verbs.add_parser(verb, help=help_text, description=help_text)
        if verb == chosen:
            module = _verb_module(parser, verb, module_name)
            module.add_arguments(sub)
            sub.set_defaults(handler=module.main)
    dev_installed = {verb: spec for verb, spec in DEV_VERBS.items() if installed(spec[0])}
    if chosen == "dev" or dev_installed:
        dev = verbs.add_parser("dev", help="developer tools", description="developer tools")
        dev_verbs = dev.add_subparsers(dest="dev_verb", required=True, metavar="VERB")
        wanted = argv[1] if chosen == "dev" and len(argv) > 1 else None
        for verb, (module_name, help_text) in DEV_VERBS.items():
            if verb != wanted and verb not in dev_installed:
                continue
            sub = dev_verbs.add_parser(verb, help=help_text, description=help_text)
            if verb == wanted:
                module = _verb_module(parser, f"dev {verb}", module_name)
                module.add_arguments(sub)
                sub.set_defaults(handler=module.main)
        if chosen == "dev" and not dev_installed and wanted not in DEV_VERBS:
            # `dev`, `dev --help`, `dev <unknown>` without the tools: the same one line, not a usage text
            _verb_module(parser, "dev", next(iter(DEV_VERBS.values()))[0])
    return parser


def installed(module_name: str) -> bool:
    """Whether the verb's top-level package can be found, without importing it (the operator's own
    verbs always can; a developer tool only where its distribution is installed)."""
    return importlib.util.find_spec(module_name.partition(".")[0]) is not None


def _verb_module(parser: argparse.ArgumentParser, verb: str, module_name: str) -> ModuleType:
    """The verb's module; a developer tool that is not installed ends the program with status 2 and one
    line saying how to get it, rather than a traceback (the image has only the operator)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = (error.name or "").partition(".")[0]
        if missing not in DEV_PACKAGES:
            raise  # a dependency missing from an installed tool is a broken install: show it whole
        parser.exit(
            2,
            f"{parser.prog} {verb}: a developer tool, not installed here ({DEV_DISTRIBUTION}; the "
            "operator's image carries only the operator); from a checkout: pip install -e ./dev\n",
        )


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(arguments).parse_args(arguments)
    sys.exit(args.handler(args))
