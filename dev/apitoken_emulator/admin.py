"""The admin endpoint under `/_emulator/`, for tests and people driving an emulator in another process.

No authentication (the emulator is a local test tool bound to loopback by default) and no secrets:
tokens are shown as metadata only, and nothing here mints a token. Keys are the Python names
(snake_case), so the HTTP, Python and CLI vocabularies are the same.

    GET    /_emulator/health                 {"status": "ok", "tokens": N}
    GET    /_emulator/faults                 the fault configuration
    PUT    /_emulator/faults                 replace it (unspecified settings get their defaults);
                                             {"profile": "realistic", ...} starts from that profile
    PATCH  /_emulator/faults                 change the given settings only ("profile" sets its own)
    DELETE /_emulator/faults                 no faults
    GET    /_emulator/counters               {operation: {status or "dropped": count}}
    DELETE /_emulator/counters               reset them
    GET    /_emulator/clock                  {"now": ISO date, "offset_seconds": float}
    POST   /_emulator/clock                  {"advance_seconds": float}: move time on (or back)
    PUT    /_emulator/clock                  {"offset_seconds": float}: set the offset from real time
    GET    /_emulator/tokens                 {"tokens": [full ApiToken metadata, creation order]}
    POST   /_emulator/use                    {"ids": [...], "ip": "..."}: consumers use these tokens
    GET    /_emulator/settings               {"personal_access_tokens": bool}
    PUT    /_emulator/settings               change them (also PATCH; "personalAccessTokens" accepted)
    GET    /_emulator/contract-violations    {"enabled": bool, "violations": [...]}
    DELETE /_emulator/contract-violations    forget them
"""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from apitoken_emulator import api
from apitoken_emulator.environment import DEFAULT_CONSUMER_ADDRESS
from apitoken_emulator.faults import FaultConfig
from apitoken_operator.dynatrace.dates import format_date

__all__ = ["ADMIN_BASE", "add_routes"]

ADMIN_BASE = "/_emulator"


def _ok(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError as error:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"invalid JSON: {error}"}), content_type="application/json"
        ) from error
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "expected a JSON object"}), content_type="application/json"
        )
    return body


async def health(request: web.Request) -> web.Response:
    return _ok({"status": "ok", "tokens": len(request.app[api.EMULATOR].store)})


async def get_faults(request: web.Request) -> web.Response:
    return _ok(request.app[api.EMULATOR].faults.config.to_json())


async def change_faults(request: web.Request) -> web.Response:
    faults = request.app[api.EMULATOR].faults
    changes = await _json_object(request)
    base = faults.config if request.method == "PATCH" else FaultConfig()
    try:
        config = base.merged(changes)
    except (ValueError, TypeError) as error:
        return _bad(str(error))
    return _ok(faults.set(config).to_json())


async def reset_faults(request: web.Request) -> web.Response:
    return _ok(request.app[api.EMULATOR].faults.reset().to_json())


async def get_counters(request: web.Request) -> web.Response:
    return _ok(request.app[api.EMULATOR].counters.snapshot())


async def reset_counters(request: web.Request) -> web.Response:
    request.app[api.EMULATOR].counters.reset()
    return _ok({})


def _clock_state(request: web.Request) -> dict[str, Any]:
    clock = request.app[api.EMULATOR].clock
    return {"now": format_date(clock()), "offset_seconds": clock.offset.total_seconds()}


async def get_clock(request: web.Request) -> web.Response:
    return _ok(_clock_state(request))


async def change_clock(request: web.Request) -> web.Response:
    clock = request.app[api.EMULATOR].clock
    body = await _json_object(request)
    key = "advance_seconds" if request.method == "POST" else "offset_seconds"
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return _bad(f"expected {{{key!r}: seconds}}")
    try:
        clock.shift(value) if request.method == "POST" else clock.set_offset(value)
    except OverflowError:
        return _bad(f"{key} is out of range")
    return _ok(_clock_state(request))


async def list_tokens(request: web.Request) -> web.Response:
    return _ok({"tokens": [record.wire() for record in request.app[api.EMULATOR].store]})


async def use_tokens(request: web.Request) -> web.Response:
    """Consumers use tokens by id: `{"used": [...], "refused": [...], "unknown": [...]}`."""
    emulator = request.app[api.EMULATOR]
    body = await _json_object(request)
    ids, ip_address = body.get("ids"), body.get("ip", DEFAULT_CONSUMER_ADDRESS)
    if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
        return _bad('expected {"ids": [token ids], "ip": "address"}')
    if not isinstance(ip_address, str) or not ip_address:
        return _bad("ip must be a non-empty string")
    result: dict[str, list[str]] = {"used": [], "refused": [], "unknown": []}
    for token_id in ids:
        if emulator.store.get(token_id) is None:  # by id only: a secret is never taken here
            result["unknown"].append(token_id)
        elif emulator.use_token(token_id, ip_address=ip_address):
            result["used"].append(token_id)
        else:
            result["refused"].append(token_id)
    return _ok(result)


def _settings(request: web.Request) -> dict[str, Any]:
    return {"personal_access_tokens": request.app[api.EMULATOR].allow_personal_access_tokens}


async def get_settings(request: web.Request) -> web.Response:
    return _ok(_settings(request))


async def change_settings(request: web.Request) -> web.Response:
    body = await _json_object(request)
    aliases = {"personalAccessTokens": "personal_access_tokens"}
    changes = {aliases.get(key, key): value for key, value in body.items()}
    unknown = sorted(set(changes) - {"personal_access_tokens"})
    if unknown:
        return _bad(f"unknown setting(s) {unknown}; known: personal_access_tokens")
    value = changes.get("personal_access_tokens")
    if value is not None:
        if not isinstance(value, bool):
            return _bad("personal_access_tokens must be true or false")
        request.app[api.EMULATOR].set_personal_access_tokens(value)
    return _ok(_settings(request))


async def get_violations(request: web.Request) -> web.Response:
    emulator = request.app[api.EMULATOR]
    violations = [violation.to_json() for violation in emulator.contract_violations]
    return _ok({"enabled": emulator.contract is not None, "violations": violations})


async def clear_violations(request: web.Request) -> web.Response:
    emulator = request.app[api.EMULATOR]
    if emulator.contract is not None:
        emulator.contract.clear()
    return _ok({"enabled": emulator.contract is not None, "violations": []})


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get(f"{ADMIN_BASE}/health", health)
    router.add_get(f"{ADMIN_BASE}/faults", get_faults)
    router.add_put(f"{ADMIN_BASE}/faults", change_faults)
    router.add_patch(f"{ADMIN_BASE}/faults", change_faults)
    router.add_delete(f"{ADMIN_BASE}/faults", reset_faults)
    router.add_get(f"{ADMIN_BASE}/counters", get_counters)
    router.add_delete(f"{ADMIN_BASE}/counters", reset_counters)
    router.add_get(f"{ADMIN_BASE}/clock", get_clock)
    router.add_post(f"{ADMIN_BASE}/clock", change_clock)
    router.add_put(f"{ADMIN_BASE}/clock", change_clock)
    router.add_get(f"{ADMIN_BASE}/tokens", list_tokens)
    router.add_post(f"{ADMIN_BASE}/use", use_tokens)
    router.add_get(f"{ADMIN_BASE}/settings", get_settings)
    router.add_put(f"{ADMIN_BASE}/settings", change_settings)
    router.add_patch(f"{ADMIN_BASE}/settings", change_settings)
    router.add_get(f"{ADMIN_BASE}/contract-violations", get_violations)
    router.add_delete(f"{ADMIN_BASE}/contract-violations", clear_violations)
