"""The six Tokens API v2 operations, as aiohttp handlers over an `Emulator`.

Authentication is `Authorization: Api-Token <secret>` only: the `api-token` query parameter, which
the real API also takes, is refused with a 401 that says so, because a client must not put secrets in
URLs. Scopes: `apiTokens.read` for list and get, `apiTokens.write` for create, update and delete,
any valid token for lookup. A disabled or expired token fails authentication (401). Each authenticated
request records the caller's `lastUsedDate` and `lastUsedIpAddress`, even when it then fails.

Path ids must look like token ids (and, for DELETE only, may be a full secret); anything else is a 400
that does not echo the value, and an unknown id is a 404 (PUT included). A caller cannot disable or
delete its own token (400).

Personal access tokens follow the environment setting (`Emulator.allow_personal_access_tokens`, default
true, switchable at run time): when it is off, creating one is a 400 and an existing one fails
authentication (401), as Dynatrace documents for `patEnabled`. A personal access token sees only its
owner's tokens: the list leaves the others out, GET of another owner's token is a 404 (as if it did not
exist), and PUT or DELETE of one is a 403 (it cannot change what is not its owner's).

List and GET answers may wait after their body is built (`list_latency`, `list_latency_per_1000`,
`get_latency`), so what a client receives describes the store as it was when the request was read.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

from apitoken_emulator import payloads
from apitoken_emulator.environment import Emulator
from apitoken_emulator.faults import Paging
from apitoken_emulator.listing import parse_list_query
from apitoken_emulator.problems import ApiError, Violation, json_response, json_text_response
from apitoken_emulator.tokens import TokenRecord
from apitoken_operator.dynatrace.models import ParameterLocation
from apitoken_operator.dynatrace.secrets import TOKEN_ID_PATTERN, TOKEN_PATTERN

__all__ = ["EMULATOR", "add_routes"]

EMULATOR: Final = web.AppKey("emulator", Emulator)
API_BASE = "/api/v2/apiTokens"
READ, WRITE = "apiTokens.read", "apiTokens.write"
_SCOPE_TITLES = {READ: "Read API tokens", WRITE: "Write API tokens"}


def authenticate(request: web.Request, required: str | None) -> TokenRecord:
    """The calling token, or a 401/403. Never quotes what the client sent."""
    emulator = request.app[EMULATOR]
    header = request.headers.get("Authorization")
    if header is None:
        if "api-token" in request.query:
            raise ApiError(
                401,
                "The api-token query parameter is not accepted here; send 'Authorization: Api-Token <token>'",
            )
        raise ApiError(401, "Missing authorization parameter.")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "api-token" or not value.strip():
        raise ApiError(401, "Authorization header must be 'Api-Token <token>'.")
    record = emulator.store.by_secret(value.strip())
    if record is None:
        raise ApiError(401, "Token Authentication failed")
    if not record.enabled:
        raise ApiError(401, "Token Authentication failed: the token is disabled")
    now = emulator.clock()
    if record.is_expired(now):
        raise ApiError(401, "Token Authentication failed: the token has expired")
    if record.personal_access_token and not emulator.allow_personal_access_tokens:
        raise ApiError(
            401, "Token Authentication failed: personal access tokens are disabled in this environment"
        )
    emulator.store.mark_used(record, now=now, ip_address=request.remote)
    if required is not None and required not in record.scopes:
        raise ApiError(
            403, f"Token is missing required scope. Use one of: {required} ({_SCOPE_TITLES[required]})"
        )
    return record


def _path_id(request: web.Request, *, secret_allowed: bool = False) -> str:
    value = request.match_info["id"]
    if TOKEN_ID_PATTERN.fullmatch(value) or (secret_allowed and TOKEN_PATTERN.fullmatch(value)):
        return value
    expected = "a token ID (dt0c01.PUBLIC) or a token" if secret_allowed else "a token ID (dt0c01.PUBLIC)"
    raise ApiError.invalid([Violation("id", f"must be {expected}", ParameterLocation.PATH)])


def _find(request: web.Request, value: str) -> TokenRecord:
    store = request.app[EMULATOR].store
    if TOKEN_PATTERN.fullmatch(value):
        record = store.by_secret(value)
        if record is None:
            raise ApiError(404, "No token with this secret exists.")
        return record
    record = store.get(value)
    if record is None:
        raise ApiError(404, f"Token with ID {value} not found")
    return record


def _visible_owner(caller: TokenRecord) -> str | None:
    """The owner a caller is limited to: a personal access token sees only its owner's tokens."""
    return caller.owner if caller.personal_access_token else None


async def _answer_later(seconds: float) -> None:
    """Wait after the body was built: the answer then describes the past, as a slow real one does."""
    if seconds > 0:
        await asyncio.sleep(seconds)


async def list_tokens(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    caller = authenticate(request, READ)
    query, position = parse_list_query(
        request.query,
        raw_query=request.rel_url.raw_query_string,
        now=emulator.clock(),
        offsets=emulator.pager.offsets,
    )
    if position is not None:
        await emulator.pager.follow_ups.passage()
    config = emulator.faults.config
    page = emulator.pager.page(
        query, position, offset_paging=config.paging is Paging.OFFSET, owner=_visible_owner(caller)
    )
    response = json_text_response(200, page.text)
    await _answer_later(config.list_latency + config.list_latency_per_1000 * page.count / 1000)
    return response


async def create_token(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    caller = authenticate(request, WRITE)
    now = emulator.clock()
    wanted = payloads.parse_create(
        payloads.parse_json_object(await request.read()), catalog=emulator.scopes, now=now
    )
    if wanted.personal_access_token and not emulator.allow_personal_access_tokens:
        raise ApiError.invalid(
            [Violation("personalAccessToken", "personal access tokens are not enabled in this environment")]
        )
    record, secret = emulator.store.create(
        name=wanted.name,
        scopes=wanted.scopes,
        owner=caller.owner,
        now=now,
        personal_access_token=wanted.personal_access_token,
        expiration_date=wanted.expiration_date,
    )
    body = {"id": record.id, "token": secret.reveal()}
    if "expirationDate" in record.wire():
        body["expirationDate"] = record.wire()["expirationDate"]
    return json_response(201, body)


async def get_token(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    caller = authenticate(request, READ)
    token_id = _path_id(request)
    record = _find(request, token_id)
    if (owner := _visible_owner(caller)) is not None and record.owner != owner:
        raise ApiError(404, f"Token with ID {token_id} not found")
    response = json_response(200, record.wire())  # encoded now: later changes do not reach this answer
    await _answer_later(emulator.faults.config.get_latency)
    return response


def _check_owner(caller: TokenRecord, record: TokenRecord, action: str) -> None:
    if caller.personal_access_token and record.owner != caller.owner:
        raise ApiError(403, f"A personal access token can {action} only tokens of its own owner.")


async def update_token(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    caller = authenticate(request, WRITE)
    record = _find(request, _path_id(request))
    _check_owner(caller, record, "update")
    body = payloads.parse_json_object(await request.read())
    change = payloads.parse_update(body, catalog=emulator.scopes, current_scopes=record.scopes)
    if change.enabled is False and record is caller:
        raise ApiError(400, "You can't disable the token you're using for authentication of the request.")
    emulator.store.update(
        record, now=emulator.clock(), name=change.name, scopes=change.scopes, enabled=change.enabled
    )
    return web.Response(status=204)


async def delete_token(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    caller = authenticate(request, WRITE)
    record = _find(request, _path_id(request, secret_allowed=True))
    if record is caller:
        raise ApiError(400, "You can't delete the token you're using for authentication of the request.")
    _check_owner(caller, record, "delete")
    emulator.store.delete(record)
    return web.Response(status=204)


async def lookup_token(request: web.Request) -> web.Response:
    authenticate(request, None)
    secret = payloads.parse_lookup(payloads.parse_json_object(await request.read()))
    record = request.app[EMULATOR].store.by_secret(secret)
    if record is None:
        raise ApiError(404, "No token with this secret exists.")
    return json_response(200, record.wire())


def add_routes(app: web.Application) -> None:
    """Route names are the operation names the counters, faults and contract use."""
    router = app.router
    router.add_get(API_BASE, list_tokens, name="list", allow_head=False)
    router.add_post(API_BASE, create_token, name="create")
    router.add_post(f"{API_BASE}/lookup", lookup_token, name="lookup")
    router.add_get(API_BASE + "/{id}", get_token, name="get", allow_head=False)
    router.add_put(API_BASE + "/{id}", update_token, name="update")
    router.add_delete(API_BASE + "/{id}", delete_token, name="delete")
