"""No namespace starves the others (issue #14): a connection that hangs or answers without end holds a
few of the operator's reconciles, never all of them, and no unbounded memory.

Namespace A (`evil-*`, the attacker, acting with its own rights as in test_tenants.py) points a labelled
connection Secret at a server on 127.0.0.1 that

- `hang`: accepts every request and never answers;
- `endless-pages`: creates tokens (and tells the operator who owns its credential), then lists them in
  pages of 200 whose `nextPageKey` never runs out (each page new tokens, so nothing repeats);
- `endless-body`: the same, but every GET (the listing, a token by id) is a 200 whose body never ends
  (`slow`: with --runslow);

and makes 100 ApiTokens that use it. Meanwhile namespace B (`victim-*`, the default connection, the
emulator) makes 30 ApiTokens one after another, 1 s apart so that they meet the attack at every stage:
each must be Ready within a second (p99; the operator keeps A to `connection_reconciles` = 8 of its
reconciles and parks the rest, so B never waits behind A), and the operator's resident memory must stay
under 300 MB all the while (the chart's memory limit is 256 MiB: past it the pod is OOM-killed, and
every namespace waits for its restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from apitoken_devenv.controlplane import free_port
from apitoken_emulator.tokens import mint_secret
from tests.fixtures.cluster import wait_until
from tests.fixtures.operator import CONNECTION_LABEL, GROUP, PLURAL, VERSION, OperatorEnv
from tests.operator import test_tenants
from tests.operator.test_tenants import Tenancy

pytestmark = pytest.mark.controlplane

tenancy = test_tenants.tenancy  # the fixture: chart RBAC for the operator, `edit` rights for the tenant

HOGS = 100
MEASURED = 30
#: the operator's per-connection reconcile budget (settings.connection_reconciles)
BUDGET = 8
P99_LIMIT = 1.0
RSS_LIMIT_MB = 300
PAGE = 200
#: B's creates start this many seconds apart, and the attack is watched this long (from B's first create):
#: long enough for A's budget to be spent and its listings to be refused and tried again (10 s apart)
SPACING = 1.0
WINDOW = 35.0


#: one listed token, its number (the id's public part) left to fill in
TOKEN_TEMPLATE = json.dumps(
    {
        "id": "dt0c01.NUMBER",
        "name": "token NUMBER of an environment without end",
        "enabled": True,
        "personalAccessToken": False,
        "owner": "someone@example.com",
        "creationDate": "2026-01-01T00:00:00.000Z",
        "modifiedDate": "2026-01-01T00:00:00.000Z",
        "lastUsedDate": "2026-01-02T00:00:00.000Z",
        "lastUsedIpAddress": "192.0.2.1",
        "scopes": ["metrics.read", "entities.read"],
    },
    separators=(",", ":"),
)


class HostileServer:
    """An HTTP server on 127.0.0.1, in a thread of its own loop, that never lets a call finish well.

    Counts requests by method and path, and the most it had open at once: what the operator let A spend.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.port = free_port()
        self.requests: Counter[str] = Counter()
        self.open = 0
        self.most_open = 0
        self.pages = 0
        self._ids = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=f"hostile-{mode}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        assert self._ready.wait(10), "the hostile server did not start"
        return self

    def __exit__(self, *_: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=15)

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests[f"{request.method} {request.path}"] += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            if self.mode == "hang":
                await asyncio.Event().wait()  # until the operator gives up (or the server stops)
            if request.method == "POST" and request.path == "/api/v2/apiTokens/lookup":
                return web.json_response(self._lookup(await request.json()))
            if request.method == "POST" and request.path == "/api/v2/apiTokens":
                return web.json_response(self._created(), status=201)
            if self.mode == "endless-body":
                return await self._endless_body(request)
            if request.method == "GET" and request.path == "/api/v2/apiTokens":
                return self._page()
            return web.json_response({"error": {"code": 404, "message": "no such thing"}}, status=404)
        finally:
            self.open -= 1

    def _token(self) -> dict[str, Any]:
        number = next(self._ids)
        token: dict[str, Any] = json.loads(TOKEN_TEMPLATE.replace("NUMBER", f"{number:024d}"))
        return token

    def _page(self) -> web.Response:
        """A page of new tokens, written from a template: the server (sharing a process, and its GIL,
        with the emulator that serves B) spends microseconds per page, not the operator's budget of CPU."""
        self.pages += 1
        first = next(self._ids)
        self._ids = itertools.count(first + PAGE)
        tokens = ",".join(TOKEN_TEMPLATE.replace("NUMBER", f"{n:024d}") for n in range(first, first + PAGE))
        text = (
            f'{{"totalCount":1000000000,"pageSize":{PAGE},"nextPageKey":"page-{self.pages}",'
            f'"apiTokens":[{tokens}]}}'
        )
        return web.Response(text=text, content_type="application/json")

    def _lookup(self, body: dict[str, Any]) -> dict[str, Any]:
        """The connection's own token, as the operator asks for its owner: it answers well, so that the
        operator goes on to create and list."""
        return {
            **self._token(),
            "id": str(body.get("token", "")).rsplit(".", 1)[0],
            "scopes": ["apiTokens.read", "apiTokens.write"],
        }

    def _created(self) -> dict[str, Any]:
        secret = mint_secret()
        return {"id": secret.rsplit(".", 1)[0], "token": secret}

    async def _endless_body(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = (json.dumps(self._token()) + ",").encode() * 256
        await response.write(b'{"apiTokens":[')
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                await response.write(chunk)
        return response


def rss_mb(pid: int) -> float:
    """The process's resident memory (VmRSS), in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


class RssSampler:
    """The operator's largest resident memory, sampled every 100 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.most = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, AssertionError):
                self.most = max(self.most, rss_mb(self.pid))
            self._stop.wait(0.1)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def time_to_ready(env: OperatorEnv, name: str, *, timeout: float = 30) -> float:
    """Create an ApiToken and poll every 50 ms until it is Ready for its generation: the seconds taken."""
    started = time.monotonic()
    env.apply(name, {"name": name, "scopes": ["metrics.read"], "enabled": True})
    deadline = started + timeout
    while time.monotonic() < deadline:
        body = env.get(name) or {}
        status = body.get("status") or {}
        ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
        if ready and ready["status"] == "True" and status.get("observedGeneration") == 1:
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"{name} not Ready after {timeout} s; operator log:\n{env.log_text()[-3000:]}")


@contextlib.contextmanager
def hogging(t: Tenancy, server: HostileServer) -> Iterator[None]:
    """A's connection Secret and its 100 ApiTokens, made by the tenant before the operator starts."""
    t.evil.core.create_namespaced_secret(
        t.evil.namespace,
        {
            "metadata": {"name": "hostile", "labels": {CONNECTION_LABEL: "true"}},
            "stringData": {"apiUrl": server.url, "apiToken": mint_secret()},
        },
    )
    for i in range(HOGS):
        t.evil.apply(
            f"hog-{i:03d}",
            {"name": f"hog {i}", "scopes": ["metrics.read"], "connectionSecretRef": {"name": "hostile"}},
        )
    yield


@pytest.mark.parametrize(
    "mode", ["hang", "endless-pages", pytest.param("endless-body", marks=pytest.mark.slow)]
)
def test_a_hanging_or_endless_connection_does_not_starve_other_namespaces(
    tenancy: Tenancy, mode: str
) -> None:
    """The operator runs under the chart's RBAC; A's objects are made before it starts, so that they
    all arrive at once, as after a restart. Every check is reported together: which of them fail says
    what A took (time, memory, places)."""
    t = tenancy
    env, b = t.env, t.victim
    with HostileServer(mode) as server, hogging(t, server):
        t.start()
        assert env.process is not None
        with RssSampler(env.process.pid) as memory:
            # A's first calls have reached the server (and its budget is in use, where calls stay open).
            wait_until(lambda: sum(server.requests.values()) >= 1, timeout=30, what="A's first call")
            with contextlib.suppress(pytest.fail.Exception):
                wait_until(lambda: server.open >= BUDGET, timeout=5, what="A's budget in use")
            # B's creates spread over the attack, then the memory watched to the end of the window.
            began = time.monotonic()
            took = []
            for i in range(MEASURED):
                took.append(time_to_ready(b, f"b-{i:02d}"))
                time.sleep(max(0.0, began + (i + 1) * SPACING - time.monotonic()))
            time.sleep(max(0.0, began + WINDOW - time.monotonic()))
            rss_seen = memory.most

    a_reasons = Counter(
        (ready or {}).get("reason")
        for item in t.evil_seen.custom.list_namespaced_custom_object(
            GROUP, VERSION, t.evil.namespace, PLURAL
        )["items"]
        for ready in [condition(item, "Ready")]
    )
    a_parked = parked(env.log_text(), t.evil.namespace)
    summary = (
        f"{mode}: B create->Ready p50 {sorted(took)[len(took) // 2]:.3f} s, p99 {p99(took):.3f} s, "
        f"max {max(took):.3f} s; operator RSS max {rss_seen:.0f} MB; A's server: {dict(server.requests)}, "
        f"at most {server.most_open} open at once, {server.pages} pages; A's objects: {dict(a_reasons)}, "
        f"{len(a_parked)} parked at least once"
    )
    print(summary)
    problems = []
    if p99(took) > P99_LIMIT:
        problems.append(f"B's p99 create->Ready {p99(took):.3f} s > {P99_LIMIT} s")
    if rss_seen >= RSS_LIMIT_MB:
        problems.append(f"the operator's RSS reached {rss_seen:.0f} MB >= {RSS_LIMIT_MB} MB")
    # Every B object is Ready (still, at the end), with a live token of its own.
    items = b.custom.list_namespaced_custom_object(GROUP, VERSION, b.namespace, PLURAL)["items"]
    ids = {(item.get("status") or {}).get("id") for item in items}
    if (
        len(items) != MEASURED
        or len(ids) != MEASURED
        or not all(i and env.emulator.emulator.record_of(i) is not None for i in ids)
    ):
        problems.append(f"B: {len(items)} objects, {len(ids)} distinct ids, not all live")
    # A held at most its budget of reconciles: never more calls open at once than that ...
    if server.most_open > BUDGET:
        problems.append(f"A had {server.most_open} calls open at once > its budget {BUDGET}")
    # ... and the rest of A's objects were parked (the debug log says so), not holding a slot each.
    if len(a_parked) < HOGS - BUDGET:
        problems.append(f"only {len(a_parked)} of A's objects were parked")
    assert not problems, f"{problems}\n{summary}"


def condition(item: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in (item.get("status") or {}).get("conditions") or () if c["type"] == kind), None)


PARKED = re.compile(r"(\S+)/(\S+): its connection's reconciles are all under way; parked")


def parked(log: str, namespace: str) -> set[str]:
    """Names of `namespace`'s objects the operator parked (its debug log says so)."""
    return {m[2] for m in PARKED.finditer(log) if m[1] == namespace}
