"""Which Dynatrace environment an ApiToken uses, with which credentials, and whether it may.

A connection is a Secret with `apiUrl` and `apiToken`: the operator-wide default, or one in the
object's own namespace (`spec.connectionSecretRef`). Clients are shared per (URL, credential), so
objects of one environment share one connection pool, one observer and one concurrency limit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apitoken_operator.controller.observer import Observer
from apitoken_operator.dynatrace import errors
from apitoken_operator.dynatrace.client import DynatraceClient
from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.kube.api import Kube
from apitoken_operator.metrics import Metrics
from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.settings import OperatorSettings


class ConnectionProblem(Exception):
    """The connection cannot be used; `reason` says why for the condition and Event."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Connection:
    name: str
    client: DynatraceClient
    observer: Observer
    is_default: bool
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


class Connections:
    def __init__(self, kube: Kube, settings: OperatorSettings, *, metrics: Metrics | None = None) -> None:
        self._kube = kube
        self._settings = settings
        self._metrics = metrics
        self._by_credential: dict[str, Connection] = {}
        #: connection Secret (namespace/name) -> the credential it held when last read
        self._credential_of: dict[str, str] = {}
        #: given to every connection's observer: ids whose tokens changed between listings
        self.on_change: Callable[[set[str]], None] | None = None
        #: connection Secret reads in flight, shared by every reconcile that asks meanwhile
        self._reading: dict[tuple[str, str], asyncio.Future[dict[str, Any] | None]] = {}

    async def resolve(self, *, namespace: str, secret_name: str | None) -> Connection:
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
        credential = hashlib.sha256(f"{url}\n{token.reveal()}".encode()).hexdigest()
        connection = self._by_credential.get(credential)
        if connection is None:
            try:
                client = DynatraceClient(
                    url,
                    token=token,
                    settings=self._settings.dynatrace,
                    on_call=self._metrics.on_call if self._metrics else None,
                )
            except errors.ConfigurationError as error:
                raise ConnectionProblem(Reason.CONNECTION_INVALID, f"{label}: {error}") from error
            observer = Observer(client, max_age=self._settings.observation_max_age)
            observer.on_change = self.on_change
            connection = Connection(
                name=f"{namespace}/{name}", client=client, observer=observer, is_default=is_default
            )
            self._by_credential[credential] = connection
        await self._retire_replaced(f"{namespace}/{name}", credential)
        return connection

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

    async def _retire_replaced(self, secret: str, credential: str) -> None:
        """A connection Secret now holds other credentials: close the old client once nothing names it."""
        previous = self._credential_of.get(secret)
        self._credential_of[secret] = credential
        if previous is None or previous == credential or previous in self._credential_of.values():
            return
        stale = self._by_credential.pop(previous, None)
        if stale is not None:
            await stale.client.aclose()

    def all(self) -> list[Connection]:
        return list(self._by_credential.values())

    async def close(self) -> None:
        for connection in self._by_credential.values():
            await connection.client.aclose()
        self._by_credential.clear()
