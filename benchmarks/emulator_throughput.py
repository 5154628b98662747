"""Requests per second of the emulator's get and list, over real HTTP on 127.0.0.1.

    python -m benchmarks.emulator_throughput [--seconds 5] [--concurrency 32] [--tokens 100]

Starts the emulator through its CLI in a subprocess (so server and client each get a core of their
own), mints `--tokens` tokens, then for each operation runs `--concurrency` aiohttp workers on
keep-alive connections for a bounded time and prints requests/s. Every response must succeed; the
run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks.harness import emulator_command


def _start_emulator(admin_file: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        emulator_command(admin_file),
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "APITOKEN_EMULATOR_VALIDATE": "0"},
    )
    assert process.stdout is not None
    base_url = process.stdout.readline().strip()
    if not base_url.startswith("http://"):
        process.kill()
        raise SystemExit(f"the emulator did not start (printed {base_url!r})")
    return process, base_url


async def _drive(session: aiohttp.ClientSession, url: str, *, seconds: float, concurrency: int) -> float:
    deadline = time.perf_counter() + seconds
    counts = [0] * concurrency

    async def worker(index: int) -> None:
        while time.perf_counter() < deadline:
            async with session.get(url) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url} answered {response.status}")
            counts[index] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(index) for index in range(concurrency)))
    return sum(counts) / (time.perf_counter() - started)


async def _run(base_url: str, token: str, args: argparse.Namespace) -> dict[str, float]:
    headers = {"Authorization": f"Api-Token {token}"}
    api = f"{base_url}/api/v2/apiTokens"
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        token_id = ""
        for index in range(args.tokens):
            body = {"name": f"bench-{index}", "scopes": ["metrics.read"]}
            async with session.post(api, json=body) as response:
                token_id = (await response.json())["id"]
        targets = {
            "get": f"{api}/{token_id}",
            f"list (pageSize=100 of {args.tokens + 1} tokens, default fields)": f"{api}?pageSize=100",
        }
        results = {}
        for name, url in targets.items():
            await _drive(
                session, url, seconds=min(1.0, args.seconds), concurrency=args.concurrency
            )  # warm-up
            results[name] = await _drive(session, url, seconds=args.seconds, concurrency=args.concurrency)
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per operation")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent requests")
    parser.add_argument("--tokens", type=int, default=100, help="tokens to create before measuring")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        admin_file = Path(directory) / "admin-token"
        process, base_url = _start_emulator(admin_file)
        try:
            token = admin_file.read_text(encoding="utf-8").strip()
            results = asyncio.run(_run(base_url, token, args))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
    for name, rate in results.items():
        print(f"{name}: {rate:,.0f} requests/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
