"""`apitoken-operator export`: write ApiToken manifests that adopt the tokens of a Dynatrace environment.

Reads every matching token (one list call per page), then writes all manifests at once: nothing is
written when reading fails. stdout carries only the manifests (with `--output -`); progress, the
summary, warnings and errors go to stderr, one line each. No secret is ever printed: Dynatrace never
returns one after creation, and the token the export authenticates with appears only by its id.

Exit codes: 0 done, 1 the export failed (authentication, network, API, writing), 2 the command line
is wrong (a flag, the URL, the token file, the selector).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from apitoken_operator.dynatrace import selector as selectors
from apitoken_operator.dynatrace.client import DynatraceClient, RetryEvent
from apitoken_operator.dynatrace.errors import (
    ConfigurationError,
    DynatraceError,
    DynatraceTransportError,
    Forbidden,
    Unauthorized,
)
from apitoken_operator.dynatrace.queries import MAX_PAGE_SIZE, MIN_PAGE_SIZE
from apitoken_operator.dynatrace.secrets import TokenSecret, install_log_masking, mask_secrets
from apitoken_operator.export.manifests import DELETION_POLICIES, Manifest, render_stream
from apitoken_operator.export.reader import ExportOptions, ExportResult, read_tokens, select
from apitoken_operator.settings import DynatraceSettings, RetrySettings

__all__ = ["TOKEN_ENV", "UsageError", "add_arguments", "main"]

TOKEN_ENV = "DYNATRACE_API_TOKEN"
READ_SCOPE = "apiTokens.read"
PROG = "apitoken-operator export"
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class UsageError(Exception):
    """The command line cannot work as given (exit code 2)."""


def _page_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not MIN_PAGE_SIZE <= value <= MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be {MIN_PAGE_SIZE}..{MAX_PAGE_SIZE}, not {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"must be true or false, not {text!r}")
    return lowered == "true"


def _namespace(text: str) -> str:
    if len(text) > 63 or not _NAMESPACE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid namespace name (a DNS-1123 label)")
    return text


def _secret_name(text: str) -> str:
    if len(text) > 253 or not _SECRET_NAME.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid Secret name (a DNS-1123 subdomain)")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List the tokens of a Dynatrace environment and write ApiToken manifests that adopt them. "
        "No secret is written: Dynatrace returns a token's secret only when the token is created."
    )
    parser.add_argument(
        "--url", required=True, help="the environment URL, e.g. https://<env-id>.live.dynatrace.com"
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"file holding a token with {READ_SCOPE} ('-' reads stdin; default: ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--namespace", type=_namespace, metavar="NS", help="set metadata.namespace of every manifest"
    )
    parser.add_argument(
        "--connection-secret",
        type=_secret_name,
        metavar="NAME",
        help="set spec.connectionSecretRef.name: a Secret in the namespace with apiUrl and apiToken of "
        "this environment (default: the operator's default connection)",
    )
    parser.add_argument(
        "--output",
        default="-",
        metavar="DIR|-",
        help="'-' (default): one multi-document YAML stream on stdout; DIR: one <name>.yaml per token",
    )
    parser.add_argument(
        "--deletion-policy",
        choices=DELETION_POLICIES,
        default="Orphan",
        help="spec.deletionPolicy of the manifests (default: Orphan, so deleting one never deletes "
        "a token that existed before)",
    )
    parser.add_argument(
        "--include-expired", action="store_true", help="also export expired tokens (default: skip them)"
    )
    parser.add_argument(
        "--include-self",
        action="store_true",
        help="also export the token this command authenticates with (default: skip it)",
    )
    parser.add_argument(
        "--page-size",
        type=_page_size,
        default=1000,
        metavar="N",
        help=f"tokens per list call, {MIN_PAGE_SIZE}..{MAX_PAGE_SIZE} (default: 1000)",
    )
    parser.add_argument(
        "--max-attempts",
        type=_positive,
        default=6,
        metavar="N",
        help="attempts per list call when Dynatrace throttles or is unreachable (default: 6)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress or summary on stderr")
    selection = parser.add_argument_group(
        "selection (criteria combine with AND; several --scope match any of them)"
    )
    selection.add_argument("--owner", metavar="OWNER", help="only tokens of this owner")
    selection.add_argument(
        "--personal-access-token",
        type=_boolean,
        metavar="true|false",
        help="only personal access tokens (true) or only API tokens (false)",
    )
    selection.add_argument(
        "--scope", action="append", default=[], metavar="SCOPE", help="only tokens with this scope"
    )
    selection.add_argument(
        "--selector",
        metavar="TEXT",
        help='an apiTokenSelector, e.g. owner("a@example.com"),scope("metrics.read")',
    )


def build_selector(args: argparse.Namespace) -> selectors.Selector:
    """The flags and `--selector` combined; the same criterion given both ways must agree."""
    try:
        raw = selectors.parse(args.selector or "")
    except selectors.SelectorSyntaxError as error:
        raise UsageError(f"--selector: {error}") from None
    flags = selectors.Selector(
        owner=args.owner,
        personal_access_token=args.personal_access_token,
        scopes=tuple(dict.fromkeys(args.scope)),
    )
    if None not in (raw.owner, flags.owner) and raw.owner != flags.owner:
        raise UsageError("--owner and the owner(...) of --selector differ")
    if None not in (raw.personal_access_token, flags.personal_access_token) and (
        raw.personal_access_token != flags.personal_access_token
    ):
        raise UsageError("--personal-access-token and the personalAccessToken(...) of --selector differ")
    if raw.scopes and flags.scopes and set(raw.scopes) != set(flags.scopes):
        raise UsageError(
            "--scope and the scope(...) of --selector differ; give the scopes one way (any of them matches)"
        )
    return selectors.Selector(
        owner=flags.owner if flags.owner is not None else raw.owner,
        personal_access_token=(
            flags.personal_access_token
            if flags.personal_access_token is not None
            else raw.personal_access_token
        ),
        scopes=flags.scopes or raw.scopes,
    )


def read_token(path: str | None, *, stdin: TextIO | None = None) -> TokenSecret:
    """The calling token from `path` ('-' = stdin) or the environment, stripped; never echoed."""
    if path is None:
        value = os.environ.get(TOKEN_ENV)
        if value is None:
            raise UsageError(f"no token: give --token-file FILE or set {TOKEN_ENV}")
        where = f"${TOKEN_ENV}"
    elif path == "-":
        value = (stdin or sys.stdin).read()
        where = "stdin"
    else:
        try:
            value = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else "not UTF-8 text"
            raise UsageError(f"cannot read the token file {path}: {reason}") from None
        where = f"the token file {path}"
    value = value.strip()
    if not value:
        raise UsageError(f"{where} holds no token")
    if any(not " " < char <= "~" for char in value):
        raise UsageError(f"{where} must hold one token on one line (it holds spaces or other characters)")
    return TokenSecret(value)


def output_target(text: str) -> Path | None:
    """None for stdout, else a directory that exists or can be made."""
    if text == "-":
        return None
    directory = Path(text)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--output {text}: exists and is not a directory")
    return directory


class Reporter:
    """Progress, warnings and the summary on stderr, one line each."""

    def __init__(self, stream: TextIO, *, quiet: bool) -> None:
        self.stream = stream
        self.quiet = quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            self.line(message)

    def line(self, message: str) -> None:
        print(mask_secrets(message), file=self.stream, flush=True)

    def progress(self, count: int) -> None:
        self.info(f"read {count} tokens...")

    def retry(self, event: RetryEvent) -> None:
        self.info(f"{event.error}; retrying in {event.delay:.1f}s (attempt {event.attempt + 1})")


def describe_failure(error: DynatraceError, *, url: str) -> str:
    """One line for people: what failed and what to do."""
    if isinstance(error, Unauthorized):
        return f"Dynatrace rejected the token (401 Unauthorized): it is unknown in {url}, disabled or expired"
    if isinstance(error, Forbidden):
        missing = error.missing_scope or READ_SCOPE
        return f"the token lacks the {missing} scope (403 Forbidden); the export needs {READ_SCOPE}"
    if isinstance(error, DynatraceTransportError):
        return f"cannot reach {url}: {error}"
    return str(error)


def write_directory(manifests: Sequence[Manifest], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for manifest in manifests:
        (directory / f"{manifest.name}.yaml").write_text(manifest.render(), encoding="utf-8")


def write_stdout(manifests: Sequence[Manifest], stream: TextIO) -> None:
    data = render_stream(manifests).encode("utf-8")
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        stream.flush()
        buffer.write(data)
        buffer.flush()
    else:
        stream.write(data.decode("utf-8"))
        stream.flush()


def summary(result: ExportResult, *, target: Path | None) -> list[str]:
    where = "stdout" if target is None else f"{len(result.manifests)} files in {target}"
    lines = [f"read {result.read} tokens; exported {len(result.manifests)} ApiToken manifests to {where}"]
    if result.expired:
        lines.append(f"skipped {len(result.expired)} expired tokens (--include-expired exports them)")
    if result.calling_token:
        lines.append(
            f"skipped the token this export authenticates with, {result.calling_token[0]} "
            "(--include-self exports it)"
        )
    if result.unmatched:
        lines.append(
            f"skipped {len(result.unmatched)} tokens Dynatrace listed that do not match the selector"
        )
    return lines


async def export(
    args: argparse.Namespace,
    *,
    token: TokenSecret,
    selector: selectors.Selector,
    target: Path | None,
    reporter: Reporter,
    stdout: TextIO,
) -> int:
    settings = DynatraceSettings(
        list_page_size=args.page_size,
        retry=RetrySettings(max_attempts=args.max_attempts, deadline=120.0),
    )
    async with DynatraceClient(args.url, token=token, settings=settings, on_retry=reporter.retry) as client:
        reporter.info(
            f"reading tokens from {client.api_root} as {client.token_id}"
            + (f" matching {selector.render()}" if not selector.is_empty() else "")
        )
        try:
            tokens = await read_tokens(
                client, selector=selector, page_size=args.page_size, progress=reporter.progress
            )
        except ConfigurationError:
            raise
        except DynatraceError as error:
            reporter.line(f"{PROG}: error: {describe_failure(error, url=client.api_root)}")
            return 1
        options = ExportOptions(
            namespace=args.namespace,
            deletion_policy=args.deletion_policy,
            connection_secret=args.connection_secret,
            selector=selector,
            include_expired=args.include_expired,
            include_self=args.include_self,
        )
        result = select(
            tokens,
            options=options,
            calling_token_id=client.token_id,
            now=datetime.now(UTC),
            source=client.api_root,
        )
    for token_id, why in result.unexportable:
        reporter.line(f"{PROG}: warning: skipped {token_id}: an ApiToken cannot declare it exactly: {why}")
    try:
        if target is None:
            write_stdout(result.manifests, stdout)
        else:
            write_directory(result.manifests, target)
    except OSError as error:
        reporter.line(f"{PROG}: error: cannot write {target or 'stdout'}: {error.strerror or error}")
        return 1
    for line in summary(result, target=target):
        reporter.info(line)
    return 0


def main(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    install_log_masking()
    out, err = stdout or sys.stdout, stderr or sys.stderr
    reporter = Reporter(err, quiet=args.quiet)
    token: TokenSecret | None = None
    try:
        selector = build_selector(args)
        target = output_target(args.output)
        token = read_token(args.token_file)
        return asyncio.run(
            export(args, token=token, selector=selector, target=target, reporter=reporter, stdout=out)
        )
    except (UsageError, ConfigurationError) as error:
        reporter.line(f"{PROG}: error: {error}")
        return 2
    except KeyboardInterrupt:
        reporter.line(f"{PROG}: interrupted")
        return 130
    except BrokenPipeError:  # e.g. `| head`: the reader left; silence the flush at exit
        if stdout is None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as error:  # a bug: one masked line, never a traceback that might quote the token
        text = f"{type(error).__name__}: {error}"
        if token is not None and len(token.reveal()) >= 8:
            text = text.replace(token.reveal(), "***")
        reporter.line(f"{PROG}: unexpected error: {text}")
        return 1
