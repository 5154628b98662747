"""The `apitoken-operator` console script: one verb per subcommand, each defined next to what it runs.

Every verb lives in its own module exposing `add_arguments(parser)` and `main(args) -> int`, so this
file only wires them together and imports a verb's dependencies only when that verb runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apitoken-operator", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    # Only the verb being run is imported, so `emulator` does not pay for kopf and vice versa.
    chosen = argv[0] if argv else None
    for verb, (module_name, help_text) in VERBS.items():
        sub = verbs.add_parser(verb, help=help_text, description=help_text)
        if verb == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(handler=module.main)
    dev = verbs.add_parser("dev", help="developer tools", description="developer tools")
    dev_verbs = dev.add_subparsers(dest="dev_verb", required=True, metavar="VERB")
    for verb, (module_name, help_text) in DEV_VERBS.items():
        sub = dev_verbs.add_parser(verb, help=help_text, description=help_text)
        if chosen == "dev" and len(argv) > 1 and argv[1] == verb:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(handler=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(arguments).parse_args(arguments)
    sys.exit(args.handler(args))
