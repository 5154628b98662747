"""`EmulatorThread`: the in-process emulator for synchronous tests, on its own loop in a daemon thread.

It exposes the same attributes as the async variant. Calls that change the store (`create_token`,
`call`) run on the emulator's loop, so they never race a request being served.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from apitoken_emulator.clock import ShiftableClock
from apitoken_emulator.contract import ContractViolation
from apitoken_emulator.counters import Counters
from apitoken_emulator.environment import Emulator
from apitoken_emulator.faults import Faults
from apitoken_emulator.listing import FollowUpGate
from apitoken_emulator.server import start_emulator
from apitoken_emulator.store import TokenStore
from apitoken_operator.dynatrace.secrets import TokenSecret

__all__ = ["EmulatorThread"]

T = TypeVar("T")
START_TIMEOUT = 30.0


class EmulatorThread:
    """`with EmulatorThread(validate_responses=True) as emulator: ...`; takes `start_emulator`'s arguments."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        self._host = host
        self._port = port
        self._options = options
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._emulator: Emulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="emulator", daemon=True)

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise TimeoutError("the emulator thread did not start in time")
        if self._failure is not None:
            raise RuntimeError("the emulator thread failed to start") from self._failure
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:
            self._failure = error
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with start_emulator(self._host, self._port, **self._options) as emulator:
            self._emulator = emulator
            self._ready.set()
            await self._stop.wait()

    @property
    def emulator(self) -> Emulator:
        if self._emulator is None:
            raise RuntimeError("the emulator thread is not running")
        return self._emulator

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `function` on the emulator's loop and return its result."""
        if self._loop is None:
            raise RuntimeError("the emulator thread is not running")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function(*args, **kwargs))
            except BaseException as error:
                future.set_exception(error)

        self._loop.call_soon_threadsafe(run)
        return future.result(START_TIMEOUT)

    def create_token(self, *args: Any, **kwargs: Any) -> TokenSecret:
        """`Emulator.create_token`, run on the emulator's loop."""
        return self.call(self.emulator.create_token, *args, **kwargs)

    def use_token(self, *args: Any, **kwargs: Any) -> bool:
        """`Emulator.use_token` (a consumer uses a token), run on the emulator's loop."""
        return self.call(self.emulator.use_token, *args, **kwargs)

    def usage_round(self, ratio: float | None = None) -> list[str]:
        """`Emulator.usage_round` (one round of the simulated consumers), run on the emulator's loop."""
        return self.call(self.emulator.usage_round, ratio)

    def set_personal_access_tokens(self, enabled: bool) -> None:
        """`Emulator.set_personal_access_tokens`, run on the emulator's loop."""
        self.call(self.emulator.set_personal_access_tokens, enabled)

    @property
    def base_url(self) -> str:
        return self.emulator.base_url

    @property
    def admin_token(self) -> TokenSecret:
        return self.emulator.admin_token

    @property
    def faults(self) -> Faults:
        return self.emulator.faults

    @property
    def counters(self) -> Counters:
        return self.emulator.counters

    @property
    def store(self) -> TokenStore:
        return self.emulator.store

    @property
    def follow_up_pages(self) -> FollowUpGate:
        return self.emulator.follow_up_pages

    @property
    def clock(self) -> ShiftableClock:
        return self.emulator.clock

    @property
    def contract_violations(self) -> list[ContractViolation]:
        return self.emulator.contract_violations
