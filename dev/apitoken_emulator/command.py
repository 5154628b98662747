"""`apitoken-operator emulator`: serve the Tokens API v2 emulator until SIGINT or SIGTERM.

When ready it writes the bootstrap admin token (apiTokens.read + apiTokens.write) to
`--admin-token-file` (mode 0600, the token and a newline) and prints its base URL alone on one line;
nothing else goes to stdout, and no secret is ever printed or logged. An admin token file left by an
earlier run is reused when that token still works (or imported into a fresh environment), so clients
configured with it keep working across restarts. APITOKEN_EMULATOR_VALIDATE=1 turns on the contract
check, like `--validate-responses`.

`--profile realistic` starts from `FaultConfig.realistic()`; fault flags given explicitly override it
(their defaults are None, meaning "not given", so the profile's values survive).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from apitoken_emulator.faults import OPERATIONS, PROFILES, FaultConfig, Outage, Paging
from apitoken_emulator.persistence import StateFileError, write_private_file
from apitoken_emulator.server import start_emulator
from apitoken_operator.dynatrace.secrets import TOKEN_PATTERN, TokenSecret, install_log_masking

__all__ = ["VALIDATE_ENV", "add_arguments", "main"]

VALIDATE_ENV = "APITOKEN_EMULATOR_VALIDATE"
log = logging.getLogger(__name__)


def _statuses(text: str) -> tuple[int, ...]:
    return tuple(int(item) for item in text.split(",") if item.strip())


def _operations(text: str) -> frozenset[str]:
    return frozenset(item.strip() for item in text.split(",") if item.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default)")
    parser.add_argument(
        "--admin-token-file",
        type=Path,
        required=True,
        help="where to write the bootstrap admin token (mode 0600)",
    )
    parser.add_argument("--state-file", type=Path, help="keep tokens in this file across restarts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault injection's random draws")
    parser.add_argument(
        "--validate-responses",
        action="store_true",
        help=f"check every response against the OpenAPI document (also {VALIDATE_ENV}=1)",
    )
    parser.add_argument(
        "--no-personal-access-tokens",
        action="store_true",
        help="behave as an environment whose setting forbids personal access tokens",
    )
    parser.add_argument("--log-level", default="WARNING", help="log level on stderr (default: WARNING)")
    faults = parser.add_argument_group(
        "faults (all can be changed at run time via /_emulator/faults; defaults: all off, or the profile's)"
    )
    faults.add_argument(
        "--profile",
        choices=PROFILES,
        default="default",
        help="start from a named fault profile; 'realistic' = the harsher reading of Dynatrace's docs",
    )
    faults.add_argument("--rate-limit-ratio", type=float, help="share of requests answered 429")
    faults.add_argument("--retry-after", type=float, help="Retry-After seconds on 429 (default: 1)")
    faults.add_argument(
        "--no-retry-after", action="store_true", default=None, help="send 429 without Retry-After"
    )
    faults.add_argument(
        "--rate-limit-reset", action="store_true", default=None, help="also send X-RateLimit-Reset on 429"
    )
    faults.add_argument("--server-error-ratio", type=float, help="share of requests answered 5xx")
    faults.add_argument(
        "--server-error-statuses", type=_statuses, help="comma-separated 5xx codes (default: 502,503,504)"
    )
    faults.add_argument(
        "--server-error-html", action="store_true", default=None, help="5xx bodies as a gateway's HTML page"
    )
    faults.add_argument(
        "--compress", action="store_true", default=None, help="gzip answers when the client accepts gzip"
    )
    faults.add_argument("--latency", type=float, help="seconds added to each request, before handling")
    faults.add_argument("--drop-ratio", type=float, help="share of connections closed before handling")
    faults.add_argument(
        "--drop-response-ratio",
        type=float,
        help="share of requests carried out whose response is dropped (a create's secret is lost)",
    )
    faults.add_argument(
        "--fault-operations",
        type=_operations,
        help=f"limit the ratio faults and latency to these operations ({','.join(OPERATIONS)})",
    )
    faults.add_argument("--outage", choices=[mode.value for mode in Outage])
    faults.add_argument("--outage-seconds", type=float, help="lift the outage after this long")
    faults.add_argument(
        "--list-latency", type=float, help="seconds a list answer waits after its page was read"
    )
    faults.add_argument(
        "--list-latency-per-1000", type=float, help="more seconds per 1,000 tokens in the page served"
    )
    faults.add_argument("--get-latency", type=float, help="seconds a GET answer waits after it was built")
    faults.add_argument(
        "--throttle-wait", type=float, help="a 429 comes after a random queue wait up to this many seconds"
    )
    faults.add_argument(
        "--throttle-capacity",
        type=int,
        help="API requests served at once; more wait up to --throttle-wait, then get 429",
    )
    faults.add_argument(
        "--paging", choices=[mode.value for mode in Paging], help="nextPageKey cursors (default: keyset)"
    )
    faults.add_argument(
        "--usage-interval", type=float, help="seconds between rounds of simulated consumers (0: off)"
    )
    faults.add_argument("--usage-ratio", type=float, help="share of usable tokens used each round")


#: Fault flags whose value goes to the FaultConfig setting of the same name when given.
_FAULT_FLAGS = (
    "rate_limit_ratio",
    "retry_after",
    "rate_limit_reset",
    "server_error_ratio",
    "server_error_statuses",
    "server_error_html",
    "compress",
    "latency",
    "drop_ratio",
    "drop_response_ratio",
    "outage",
    "outage_seconds",
    "list_latency",
    "list_latency_per_1000",
    "get_latency",
    "throttle_wait",
    "throttle_capacity",
    "paging",
    "usage_interval",
    "usage_ratio",
)


def _fault_config(args: argparse.Namespace) -> FaultConfig:
    """The profile, with every fault flag that was given applied over it."""
    changes = {name: getattr(args, name) for name in _FAULT_FLAGS if getattr(args, name) is not None}
    if args.fault_operations is not None:
        changes["operations"] = sorted(args.fault_operations)
    if args.no_retry_after:
        changes["retry_after"] = None
    return FaultConfig.profile(args.profile, **changes)


def _previous_admin_token(path: Path) -> TokenSecret | None:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return TokenSecret(value) if TOKEN_PATTERN.fullmatch(value) else None


async def _serve(args: argparse.Namespace, faults: FaultConfig, validate: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    async with start_emulator(
        args.host,
        args.port,
        state_file=args.state_file,
        validate_responses=validate,
        seed=args.seed,
        faults=faults,
        admin_token=_previous_admin_token(args.admin_token_file),
        allow_personal_access_tokens=not args.no_personal_access_tokens,
    ) as emulator:
        write_private_file(args.admin_token_file, (emulator.admin_token.reveal() + "\n").encode("ascii"))
        print(emulator.base_url, flush=True)
        log.info("admin token %s written to %s", emulator.admin_token, args.admin_token_file)
        await stop.wait()
        log.info("stopping")
    return 0


def main(args: argparse.Namespace) -> int:
    install_log_masking()
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    validate = args.validate_responses or os.environ.get(VALIDATE_ENV, "") == "1"
    try:
        faults = _fault_config(args)
    except ValueError as error:
        print(f"emulator: {error}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(args, faults, validate))
    except StateFileError as error:
        print(f"emulator: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"emulator: cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 2
