"""`apitoken-operator run`: the operator, with kopf's flags and ours."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import sys
from collections.abc import Mapping
from typing import Any, NoReturn, cast

from apitoken_operator.dynatrace.secrets import install_log_masking
from apitoken_operator.reconcile.policy import is_denied_name
from apitoken_operator.settings import (
    DEFAULT_ALLOWED_SCOPES,
    ConnectionSettings,
    OperatorSettings,
    PolicySettings,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="PATTERN",
        help="watch this namespace (repeatable; globs like team-* allowed)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig file for the operator's client and kopf's own login, in a pod too "
        "(default: in-cluster, then $KUBECONFIG)",
    )
    # Standalone is simply --peering absent; nothing reads --standalone. It stays as the explicit
    # spelling of the default (kopf's own flag, used by the chart and deploy/), refused with --peering.
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--standalone",
        action="store_true",
        help="run without peering, one replica: the default, spelled out (not with --peering)",
    )
    peering.add_argument(
        "--peering", metavar="NAME", help="coordinate replicas through this KopfPeering object"
    )
    parser.add_argument(
        "--priority",
        type=int,
        metavar="N",
        help="peering priority: the replica with the highest runs, the others stand by "
        "(default with --peering: random, so that replicas never tie and all pause)",
    )
    parser.add_argument(
        "--liveness", metavar="URL", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument(
        "--default-connection",
        metavar="NAMESPACE/SECRET",
        help="Secret with apiUrl and apiToken used when an ApiToken names no connection",
    )
    parser.add_argument(
        "--policy-namespace",
        action="append",
        default=[],
        metavar="PATTERN",
        help="namespaces that may use the default connection (repeatable; default: all)",
    )
    parser.add_argument(
        "--policy-allowed-scope",
        action="append",
        default=None,
        metavar="PATTERN",
        help="scopes the default connection may grant (repeatable; replaces the shipped list: "
        f"{', '.join(DEFAULT_ALLOWED_SCOPES)})",
    )
    parser.add_argument(
        "--policy-denied-scope",
        action="append",
        default=[],
        metavar="PATTERN",
        help="more scopes the default connection must not grant (repeatable; added to the built-in "
        "escalating scopes, which always stay denied)",
    )
    parser.add_argument(
        "--policy-allow-escalating-scope",
        action="append",
        default=[],
        metavar="SCOPE",
        help="let the default connection grant this escalating scope after all (repeatable; exact name, "
        "no patterns; e.g. InstallerDownload for the Dynatrace Operator)",
    )
    parser.add_argument(
        "--policy-allow-personal-access-tokens",
        action="store_true",
        help="let the default connection create personal access tokens",
    )
    parser.add_argument(
        "--policy-max-tokens-per-namespace",
        type=int,
        metavar="N",
        help="a namespace holding N ApiTokens with tokens gets no new token through the default "
        "connection (default: no limit)",
    )
    parser.add_argument(
        "--policy-max-grace-period",
        type=float,
        default=7 * 24 * 3600.0,
        metavar="SECONDS",
        help="longest spec.rotation.gracePeriod through the default connection (default 604800: 7 days)",
    )
    parser.add_argument(
        "--max-retiring",
        type=int,
        default=3,
        metavar="N",
        help="rotated-out tokens an object keeps at once; a rotation due while N retire waits (default 3)",
    )
    parser.add_argument(
        "--policy-adopt-namespace",
        action="append",
        default=[],
        metavar="PATTERN",
        help="namespaces whose ApiTokens may adopt existing tokens through the default connection "
        "(repeatable; default: none)",
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="accept http:// connection URLs (the local emulator, tests); the API token then travels "
        "in clear text",
    )
    parser.add_argument(
        "--allow-connection-cidr",
        action="append",
        default=[],
        metavar="CIDR",
        help="let namespace connection Secrets reach this internal network (repeatable; by default they "
        "may not reach loopback, link-local, private, shared (CGNAT), multicast or reserved addresses)",
    )
    parser.add_argument(
        "--drift-interval",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how often each connection's tokens are listed to find changes made outside (default 300)",
    )
    parser.add_argument(
        "--observation-max-age",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long a listing is trusted before a reconcile lists again (default 60)",
    )
    parser.add_argument(
        "--list-page-size",
        type=int,
        default=10000,
        metavar="N",
        help="tokens per page when a connection's tokens are listed, 100..10000 (default 10000)",
    )
    parser.add_argument(
        "--last-used-interval",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="at most one status write per object in this time for a token's use alone "
        "(lastUsedDate, lastUsedIpAddress; default 3600)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on this port at /metrics (default: not served)",
    )
    parser.add_argument(
        "--events",
        choices=["all", "warnings"],
        default="all",
        help="Events to post on ApiTokens: all (default), or warnings only (one write fewer per "
        "created or deleted token)",
    )
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


PROG = "apitoken-operator run"


class UsageError(SystemExit):
    """A command line that parses but makes no sense: exit status 2 (as argparse's own errors), the
    message one line on stderr (`main` writes it; `str()` is the message, for callers and tests)."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _usage(message: str) -> NoReturn:
    raise UsageError(message)


def _page_size(value: int) -> int:
    if not 100 <= value <= 10000:
        _usage("--list-page-size must be 100..10000")
    return value


def kubeconfig_path(value: str | None) -> str | None:
    """`--kubeconfig` as an absolute path to a readable file (kopf reads it later, by itself)."""
    if not value:
        return None
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        _usage(f"--kubeconfig {value}: not a readable file")
    return path


def settings_from(args: argparse.Namespace) -> OperatorSettings:
    default = args.default_connection
    if default is not None and default.count("/") != 1:
        _usage("--default-connection must be NAMESPACE/SECRET")
    policy = PolicySettings(
        allowed_namespaces=tuple(args.policy_namespace),
        allowed_scopes=(
            DEFAULT_ALLOWED_SCOPES if args.policy_allowed_scope is None else tuple(args.policy_allowed_scope)
        ),
        denied_scopes=tuple(args.policy_denied_scope),
        allowed_escalating_scopes=tuple(args.policy_allow_escalating_scope),
        allow_personal_access_tokens=args.policy_allow_personal_access_tokens,
        adoption_namespaces=tuple(args.policy_adopt_namespace),
        max_tokens_per_namespace=args.policy_max_tokens_per_namespace,
        max_grace_period=args.policy_max_grace_period,
    )
    _check_escalating(policy)
    connections = ConnectionSettings(
        allow_insecure_http=args.allow_insecure_http,
        allowed_cidrs=tuple(_cidr(text) for text in args.allow_connection_cidr),
    )
    return OperatorSettings(
        default_connection=default,
        policy=policy,
        connections=connections,
        drift_interval=args.drift_interval,
        observation_max_age=args.observation_max_age,
        last_used_interval=args.last_used_interval,
        list_page_size=_page_size(args.list_page_size),
        max_retiring=max(1, args.max_retiring),
        events=args.events,
        peering=args.peering is not None,
    )


def _check_escalating(policy: PolicySettings) -> None:
    """An escalating scope is let through by exact name only, and only a name that is in fact denied:
    a pattern or a misspelling would otherwise pass silently and lift nothing (or too much)."""
    for name in policy.allowed_escalating_scopes:
        if any(char in name for char in "*?[]"):
            _usage(f"--policy-allow-escalating-scope takes an exact scope name, not a pattern: {name!r}")
        if not is_denied_name(name, policy):
            _usage(
                f"--policy-allow-escalating-scope {name}: not a denied scope "
                "(scope names are case-sensitive); to grant an ordinary scope, use --policy-allowed-scope"
            )


def _cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError as error:
        raise UsageError(f"--allow-connection-cidr {text!r}: {error}") from None


#: The operator's own lines about an object start with "<namespace>/<name>: " (`work.reference`, or
#: "%s/%s: " with the key): a namespace is a DNS-1123 label, a name a DNS-1123 subdomain, so the prefix
#: is unambiguous. Read only from the operator's controller loggers, and only until those lines pass
#: the object in `extra` (`k8s_ref`, as kopf's object loggers do), which always wins.
_OBJECT_PREFIX = re.compile(
    r"([a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)/([a-z0-9](?:[-.a-z0-9]{0,251}[a-z0-9])?): "
)
_PREFIXED_LOGGERS = "apitoken_operator.controller"


def object_of(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """The (namespace, name) a record is about, or (None, None).

    kopf's object loggers (`logger` in handlers, "kopf.objects") put the object in `record.k8s_ref`;
    the operator's own log calls may pass the same: `extra={"k8s_ref": {"namespace": ..., "name": ...}}`
    (`extra={"name": ...}` is impossible: `name` is the LogRecord's logger name).
    """
    ref = getattr(record, "k8s_ref", None)
    if isinstance(ref, Mapping) and ref.get("name"):
        namespace = ref.get("namespace")
        return (str(namespace) if namespace else None), str(ref["name"])
    if record.name == _PREFIXED_LOGGERS or record.name.startswith(_PREFIXED_LOGGERS + "."):
        found = _OBJECT_PREFIX.match(str(record.msg) if record.args is None else record.getMessage())
        if found is not None:
            return found.group(1), found.group(2)
    return None, None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time` (ISO 8601, UTC, with its offset), `level`, `logger`, `message`,
    and `namespace` and `name` when the record is about an object."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        namespace, name = object_of(record)
        if namespace is not None:
            entry["namespace"] = namespace
        if name is not None:
            entry["name"] = name
        if record.exc_text:  # formatted, and its secrets masked, where the record was made
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(*, log_format: str, verbose: bool) -> None:
    install_log_masking()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not verbose:  # kopf says "Handler ... succeeded" for every watch event: only with -v
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def _priority(args: argparse.Namespace) -> int | None:
    if args.priority is not None:
        return int(args.priority)
    if args.peering is None:
        return None
    return secrets.randbelow(2**31)  # kopf pauses every replica when the highest priorities tie


def main(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
        kubeconfig = kubeconfig_path(args.kubeconfig)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2

    import kopf

    from apitoken_operator.controller.failpoints import FailPoints
    from apitoken_operator.controller.runtime import Options
    from apitoken_operator.handlers import Operator, build_registry

    configure_logging(log_format=args.log_format, verbose=args.verbose)
    if kubeconfig:
        # kopf's login handlers read the file from $KUBECONFIG: with --kubeconfig, that file and no other
        # (the login handler must prefer it to the pod's ServiceAccount: handlers.login).
        os.environ["KUBECONFIG"] = kubeconfig
    # kopf would ask getpass for the user name, which fails for a UID without a passwd entry. The chart
    # sets POD_ID to the pod's name (as kopf itself would read it); elsewhere the host name stands in.
    host = os.environ.get("POD_ID") or socket.gethostname()
    identity = f"apitoken-operator@{host}/{os.getpid()}"
    priority = _priority(args)
    options = Options(
        settings=settings,
        kubeconfig=kubeconfig,
        metrics_port=args.metrics_port,
        identity=identity,
        peering_name=args.peering,
        clusterwide=not args.namespace,
        priority=priority or 0,
        # the peering objects of namespaces named exactly (a glob's namespaces are not known up front)
        namespaces=tuple(n for n in args.namespace or () if not any(c in n for c in "*?[]")),
        namespace_patterns=tuple(args.namespace or ()),
        failpoints=FailPoints.from_environment(),
    )
    registry = build_registry(Operator(options))
    asyncio.run(
        kopf.operator(
            identity=cast(Any, identity),
            registry=registry,
            standalone=args.peering is None,
            peering_name=args.peering,
            priority=priority,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness,
        )
    )
    return 0
