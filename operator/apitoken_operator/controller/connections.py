"""Which Dynatrace environment an ApiToken uses, with which credentials, and whether it may.

A connection is a Secret with `apiUrl` and `apiToken`: the operator-wide default, or one in the
object's own namespace (`spec.connectionSecretRef`). Clients are shared per (URL, credential, kind of
connection), so objects of one environment share one connection pool, one observer and one concurrency
limit. What a resolve says about the object (above all whether it came through the default connection,
and so whether the default-connection policy applies) is decided by the path the object names, every
time, and returned in a `Connection` view of its own: never by whichever object first made the shared
client.

Namespace connections are written by namespace users, so they are held to more (see `egress.py`):
the Secret must opt in with the label `dynatrace.apitokens.io/connection: "true"`, the URL must not lead
to an internal address, and error messages quote only Dynatrace's error envelope, never a raw body.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from apitoken_operator.api.group import qualified
from apitoken_operator.controller import egress
from apitoken_operator.controller.observer import Observer
from apitoken_operator.dynatrace import errors, urls
from apitoken_operator.dynatrace.client import DynatraceClient
from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.kube.api import Kube
from apitoken_operator.metrics import Metrics
from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.settings import OperatorSettings

#: The label (value "true") by which a Secret in an ApiToken's namespace agrees to serve as a connection.
CONNECTION_LABEL = qualified("connection")


class ConnectionProblem(Exception):
    """The connection cannot be used; `reason` says why for the condition and Event."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class SharedClient:
    """One client, observer and owner cache per (URL, credential, kind): shared by every object using it."""

    #: The connection Secret (namespace/name) that first made it: for logs only, never for decisions.
    name: str
    client: DynatraceClient
    observer: Observer
    _owner: str | None = None
    _owner_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def owner(self) -> str | None:
        """The owner of the connection's own token: the owner Dynatrace gives every token it creates."""
        if self._owner is None:
            async with self._owner_lock:
                if self._owner is None:
                    me = await self.client.lookup(self.client_token)
                    self._owner = me.owner
        return self._owner

    @property
    def client_token(self) -> TokenSecret:
        return self.client._token


@dataclass(frozen=True)
class Connection:
    """One resolve's answer: the shared client, and the facts of this object's own path to it."""

    shared: SharedClient
    #: The connection Secret this object named (or the default's), namespace/name.
    name: str
    #: True when the object names no connection Secret: the operator's policy applies.
    is_default: bool

    @property
    def client(self) -> DynatraceClient:
        return self.shared.client

    @property
    def observer(self) -> Observer:
        return self.shared.observer

    @property
    def client_token(self) -> TokenSecret:
        return self.shared.client_token

    async def owner(self) -> str | None:
        return await self.shared.owner()


class Connections:
    def __init__(self, kube: Kube, settings: OperatorSettings, *, metrics: Metrics | None = None) -> None:
        self._kube = kube
        self._settings = settings
        self._metrics = metrics
        self._allowed_networks = egress.networks(settings.connections.allowed_cidrs)
        self._by_credential: dict[str, SharedClient] = {}
        #: (connection Secret namespace/name, is_default) -> the credential key it held when last read
        self._credential_of: dict[tuple[str, bool], str] = {}
        #: object uid -> the client it used last (see `resolve`)
        self._used_by: dict[str, SharedClient] = {}
        #: the id of the default connection's token, once read: never adopted, changed or deleted by anyone
        self.default_token_id: str | None = None
        #: given to every connection's observer: ids whose tokens changed between listings
        self.on_change: Callable[[set[str]], None] | None = None
        #: connection Secret reads in flight, shared by every reconcile that asks meanwhile
        self._reading: dict[tuple[str, str], asyncio.Future[dict[str, Any] | None]] = {}

    async def resolve(
        self, *, namespace: str, secret_name: str | None, user: str | None = None
    ) -> Connection:
        """The connection the object names; `is_default` follows from `secret_name`, nothing else.

        `user` (an object's uid) is counted as using it until `release(user)`: a client (its pool, its
        listing of maybe a million tokens, its drift checks) lives only while some object uses it.
        """
        connection = await self._resolve(namespace=namespace, secret_name=secret_name)
        if user is not None:
            previous = self._used_by.get(user)
            self._used_by[user] = connection.shared
            if previous is not None and previous is not connection.shared:
                await self._close_if_unused(previous)
        return connection

    async def release(self, user: str) -> None:
        """The object is gone: its connection's client closes if nobody else uses it."""
        shared = self._used_by.pop(user, None)
        if shared is not None:
            await self._close_if_unused(shared)

    async def _close_if_unused(self, shared: SharedClient) -> None:
        if any(other is shared for other in self._used_by.values()):
            return
        for credential, candidate in list(self._by_credential.items()):
            if candidate is shared:
                del self._by_credential[credential]
                await shared.client.aclose()

    async def _resolve(self, *, namespace: str, secret_name: str | None) -> Connection:
        if secret_name is not None:
            return await self._from_secret(namespace, secret_name, is_default=False)
        default = self._settings.default_connection
        if not default:
            raise ConnectionProblem(
                Reason.CONNECTION_MISSING,
                "spec.connectionSecretRef is not set and the operator has no default connection "
                "(apitoken-operator run --default-connection NAMESPACE/SECRET)",
            )
        default_namespace, _, default_name = default.partition("/")
        return await self._from_secret(default_namespace, default_name, is_default=True)

    async def _from_secret(self, namespace: str, name: str, *, is_default: bool) -> Connection:
        label = f"{'default connection ' if is_default else 'connection '}Secret {namespace}/{name}"
        body = await self._read(namespace, name)
        if body is None:
            raise ConnectionProblem(Reason.CONNECTION_MISSING, f"{label} does not exist")
        if not is_default:
            labels = (body.get("metadata") or {}).get("labels") or {}
            if labels.get(CONNECTION_LABEL) != "true":
                raise ConnectionProblem(
                    Reason.CONNECTION_INVALID,
                    f"{label} is not marked as a connection: a Secret serves as one only with the label "
                    f"{CONNECTION_LABEL}=true (kubectl label secret {name} -n {namespace} "
                    f"{CONNECTION_LABEL}=true), so that no other Secret with these keys is used by accident",
                )
        data = body.get("data") or {}
        missing = [key for key in ("apiUrl", "apiToken") if not data.get(key)]
        if missing:
            raise ConnectionProblem(
                Reason.CONNECTION_INVALID, f"{label} lacks the key(s) {', '.join(missing)}"
            )
        try:
            url = base64.b64decode(data["apiUrl"]).decode().strip()
            token = TokenSecret(base64.b64decode(data["apiToken"]).decode())
        except (binascii.Error, UnicodeDecodeError) as error:
            raise ConnectionProblem(Reason.CONNECTION_INVALID, f"{label} holds undecodable data") from error
        insecure = egress.scheme_problem(
            url, allow_insecure_http=self._settings.connections.allow_insecure_http
        )
        if insecure:
            raise ConnectionProblem(Reason.CONNECTION_NOT_ALLOWED, f"{label}: {insecure}")
        kind = "default" if is_default else "namespace"
        credential = hashlib.sha256(f"{kind}\n{url}\n{token.reveal()}".encode()).hexdigest()
        shared = self._by_credential.get(credential)
        if shared is None:
            made = await self._new_client(label, url, token, is_default=is_default)
            shared = self._by_credential.setdefault(credential, made)
            if shared is not made:  # another reconcile made one meanwhile
                await made.client.aclose()
        await self._retire_replaced((f"{namespace}/{name}", is_default), credential)
        if is_default:
            self.default_token_id = token.token_id
        return Connection(shared=shared, name=f"{namespace}/{name}", is_default=is_default)

    async def _new_client(
        self, label: str, url: str, token: TokenSecret, *, is_default: bool
    ) -> SharedClient:
        """A client for the URL; for a namespace connection only after its addresses passed the checks,
        over a transport that checks them again at every connect, and quoting no raw error bodies."""
        transport: httpx.AsyncBaseTransport | None = None
        if not is_default:
            try:
                api_root = urls.api_root(url)
            except errors.ConfigurationError as error:
                raise ConnectionProblem(Reason.CONNECTION_INVALID, f"{label}: {error}") from error
            refused = await egress.check_addresses(api_root, allowed=self._allowed_networks)
            if refused:
                raise ConnectionProblem(Reason.CONNECTION_NOT_ALLOWED, f"{label}: {refused}")
            if not egress.through_proxy(api_root):
                limits = self._settings.dynatrace.max_connections
                transport = egress.GuardedTransport(
                    allowed=self._allowed_networks,
                    limits=httpx.Limits(max_connections=limits, max_keepalive_connections=limits),
                )
        try:
            client = DynatraceClient(
                url,
                token=token,
                settings=self._settings.dynatrace,
                on_call=self._metrics.on_call if self._metrics else None,
                transport=transport,
                quote_unstructured_errors=is_default,
            )
        except errors.ConfigurationError as error:
            if transport is not None:
                await transport.aclose()
            raise ConnectionProblem(Reason.CONNECTION_INVALID, f"{label}: {error}") from error
        observer = Observer(
            client,
            max_age=self._settings.observation_max_age,
            last_used_interval=self._settings.last_used_interval,
            page_size=self._settings.list_page_size,
            limits=self._settings.observation,
        )
        observer.on_change = self.on_change
        return SharedClient(name=label.split("Secret ", 1)[1], client=client, observer=observer)

    async def default_credential_id(self) -> str | None:
        """The id of the token the default connection holds now, read from its Secret (None: no default,
        or nothing readable in it). Asked before an adoption, so that no connection adopts it, whether or
        not anything has used the default connection since start-up."""
        default = self._settings.default_connection
        if not default:
            return None
        namespace, _, name = default.partition("/")
        body = await self._read(namespace, name)
        encoded = ((body or {}).get("data") or {}).get("apiToken")
        if not encoded:
            return None
        try:
            token_id = TokenSecret(base64.b64decode(encoded).decode()).token_id
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        self.default_token_id = token_id
        return self.default_token_id

    async def _read(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One GET of a connection Secret for all the reconciles that need it at the same moment.

        Not a cache: a read that starts after another finished makes its own GET, so a changed or
        deleted connection Secret is seen at once; only a burst of reconciles shares a read.
        """
        key = (namespace, name)
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.ensure_future(self._kube.get_secret(namespace, name))
            self._reading[key] = reading
            reading.add_done_callback(lambda _: self._reading.pop(key, None))
        return await asyncio.shield(reading)

    async def _retire_replaced(self, secret: tuple[str, bool], credential: str) -> None:
        """A connection Secret now holds other credentials: close the old client once nothing names it."""
        previous = self._credential_of.get(secret)
        self._credential_of[secret] = credential
        if previous is None or previous == credential or previous in self._credential_of.values():
            return
        stale = self._by_credential.pop(previous, None)
        if stale is not None:
            await stale.client.aclose()

    def all(self) -> list[SharedClient]:
        return list(self._by_credential.values())

    async def close(self) -> None:
        for connection in self._by_credential.values():
            await connection.observer.close()  # a listing under way would go on with a closed client
            await connection.client.aclose()
        self._by_credential.clear()
