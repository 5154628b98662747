"""Serving an `Emulator` over HTTP in-process: `async with start_emulator(...) as emulator:`.

The server owns its listening socket (rather than an aiohttp site) so that a `refuse` outage can close
it synchronously, making new connections fail with "connection refused", and reopen it on the same
port when the outage ends. Binding happens before the base URL is published, so `port=0` is race-free.
A background task plays the environment's consumers (`usage_interval`, `usage_ratio`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from apitoken_emulator.app import build_app
from apitoken_emulator.clock import Clock
from apitoken_emulator.environment import Emulator
from apitoken_emulator.faults import FaultConfig, Faults, Outage
from apitoken_operator.dynatrace.secrets import TokenSecret

__all__ = ["Listener", "run_consumers", "start_emulator"]

log = logging.getLogger(__name__)


class Listener:
    """The listening socket; follows the fault configuration's `refuse` outage."""

    def __init__(self, runner: web.AppRunner, faults: Faults, host: str, port: int) -> None:
        self._runner = runner
        self._faults = faults
        self._host = host
        self._port = port
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._socket: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._pending: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        self._bind()
        await self._serve()
        self._faults.subscribe(self._faults_changed)
        self.reconcile()

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._stop_listening()

    def reconcile(self) -> None:
        """Open or close the socket to match the outage in force; re-check when a timed one ends."""
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        refusing = self._faults.outage() is Outage.REFUSE
        if refusing and self._socket is not None:
            log.info("outage: refusing connections on %s", self.url)
            self._stop_listening()
            server = self._runner.server
            for connection in server.connections if server is not None else []:
                connection.force_close()
        elif not refusing and self._socket is None:
            log.info("outage over: accepting connections on %s", self.url)
            self._bind()
            self._pending = self._loop.create_task(self._serve())
        remaining = self._faults.outage_remaining()
        if refusing and remaining is not None:
            self._timer = self._loop.call_later(remaining + 0.001, self.reconcile)

    def _faults_changed(self) -> None:
        if threading.get_ident() == self._thread:
            self.reconcile()
            return
        done = threading.Event()

        def run() -> None:
            try:
                self.reconcile()
            finally:
                done.set()

        with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to reconcile
            self._loop.call_soon_threadsafe(run)
            done.wait(10)

    def _bind(self) -> None:
        """Bind and listen synchronously: from here on connections queue instead of being refused."""
        family, kind, proto, _, address = socket.getaddrinfo(
            self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._socket = sock

    async def _serve(self) -> None:
        sock, server = self._socket, self._runner.server
        if sock is None or server is None:
            return
        self._server = await self._loop.create_server(server, sock=sock)

    def _stop_listening(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
        self._pending = None
        if self._server is not None:
            self._server.close()  # closes the listening socket now
            self._server = None
        elif self._socket is not None:
            self._socket.close()
        self._socket = None


async def run_consumers(emulator: Emulator) -> None:
    """Every `usage_interval` real seconds, one `usage_round`; sleeps while the interval is 0.

    A change of the fault configuration wakes it, so a new interval takes effect at once (counted
    from the change). It runs on the emulator's loop, so it never races a request being served.
    """
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
            loop.call_soon_threadsafe(changed.set)

    emulator.faults.subscribe(wake)
    while True:
        interval = emulator.faults.config.usage_interval
        changed.clear()
        try:  # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            async with asyncio.timeout(interval or None):
                await changed.wait()
        except TimeoutError:
            try:
                used = emulator.usage_round()
            except Exception:  # a bug here must not silently end the consumers for the whole run
                log.exception("the simulated consumers failed")
            else:
                log.debug("consumers used %d token(s)", len(used))


@asynccontextmanager
async def start_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    state_file: Path | str | None = None,
    validate_responses: bool = False,
    clock: Clock | None = None,
    seed: int = 0,
    faults: FaultConfig | None = None,
    admin_token: TokenSecret | None = None,
    allow_personal_access_tokens: bool = True,
) -> AsyncIterator[Emulator]:
    """Serve a new emulated environment until the block ends; yields it with `base_url` set."""
    emulator = Emulator(
        clock=clock,
        seed=seed,
        validate_responses=validate_responses,
        state_file=state_file,
        faults=faults,
        admin_token=admin_token,
        allow_personal_access_tokens=allow_personal_access_tokens,
    )
    runner = web.AppRunner(build_app(emulator), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    listener = Listener(runner, emulator.faults, host, port)
    consumers = asyncio.get_running_loop().create_task(run_consumers(emulator), name="emulator-consumers")
    try:
        await listener.start()
        emulator.base_url = listener.url
        log.info("emulator serving %s", listener.url)
        yield emulator
    finally:
        consumers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumers
        listener.close()
        await runner.cleanup()
        emulator.base_url = None
        emulator.flush()
