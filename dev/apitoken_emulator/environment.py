"""One emulated Dynatrace environment: its tokens, clock, faults, counters and contract checker.

Independent of HTTP, so tests and the server share one object: the server reads and changes it, tests
mint tokens, shift time and switch faults on it directly. It also plays the environment's consumers:
`use_token` and `usage_round` move `lastUsedDate` / `lastUsedIpAddress` without any API call, as
workloads using their tokens do on a real tenant.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from apitoken_emulator.catalog import ScopeCatalog, load_scopes
from apitoken_emulator.clock import Clock, ShiftableClock
from apitoken_emulator.contract import ContractChecker, ContractViolation
from apitoken_emulator.counters import Counters
from apitoken_emulator.faults import FaultConfig, Faults
from apitoken_emulator.listing import FollowUpGate, Pager
from apitoken_emulator.persistence import StateFile
from apitoken_emulator.store import TokenStore
from apitoken_emulator.tokens import TokenRecord
from apitoken_operator.dynatrace.secrets import TOKEN_PATTERN, TokenSecret

__all__ = ["ADMIN_OWNER", "ADMIN_SCOPES", "Emulator"]

log = logging.getLogger(__name__)

ADMIN_OWNER = "admin@example.com"
ADMIN_SCOPES = ("apiTokens.read", "apiTokens.write")
ADMIN_TOKEN_NAME = "emulator-admin"
#: Addresses the simulated consumers use tokens from (private ranges: never a real client's).
CONSUMER_ADDRESSES = ("10.20.0.11", "10.20.0.12", "10.20.7.40", "192.168.50.3")
DEFAULT_CONSUMER_ADDRESS = "10.1.2.3"


class Emulator:
    """The state behind the HTTP API. `base_url` is set while a server is serving it."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        seed: int = 0,
        validate_responses: bool = False,
        state_file: Path | str | None = None,
        faults: FaultConfig | None = None,
        admin_token: TokenSecret | None = None,
        allow_personal_access_tokens: bool = True,
    ) -> None:
        self.clock = ShiftableClock(clock)
        self.scopes: ScopeCatalog = load_scopes()
        self.allow_personal_access_tokens = allow_personal_access_tokens
        self.state_file = None if state_file is None else StateFile(Path(state_file))
        self.store = TokenStore(persist=self._persist if self.state_file else None)
        if self.state_file is not None and (records := self.state_file.load()) is not None:
            self.store.load(records)
            log.info("loaded %d token(s) from %s", len(records), self.state_file.path)
        self.pager = Pager(self.store)
        self.faults = Faults(seed=seed, config=faults)
        # Its own stream, so consumer rounds (which run on a timer) never shift the faults' draws.
        self._usage_random = random.Random(f"usage:{seed}")  # noqa: S311 - reproducible, not cryptography
        self.counters = Counters()
        self.contract = ContractChecker() if validate_responses else None
        self.admin_token = self._bootstrap_admin(admin_token)
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT`, without `/api`: what a user configures as the environment URL."""
        if self._base_url is None:
            raise RuntimeError("the emulator is not serving yet")
        return self._base_url

    @base_url.setter
    def base_url(self, value: str | None) -> None:
        self._base_url = value

    @property
    def contract_violations(self) -> list[ContractViolation]:
        return [] if self.contract is None else list(self.contract.violations)

    @property
    def follow_up_pages(self) -> FollowUpGate:
        """Hold listings between their pages, to change the store at a chosen moment (tests)."""
        return self.pager.follow_ups

    def create_token(
        self,
        name: str = "test-token",
        scopes: Iterable[str] = ADMIN_SCOPES,
        *,
        owner: str = ADMIN_OWNER,
        enabled: bool = True,
        personal_access_token: bool = False,
        expiration_date: datetime | None = None,
        additional_metadata: dict[str, Any] | None = None,
    ) -> TokenSecret:
        """Mint a token directly, bypassing the API's checks (any scope, even legacy or disabled)."""
        _, secret = self.store.create(
            name=name,
            scopes=tuple(scopes),
            owner=owner,
            now=self.clock(),
            enabled=enabled,
            personal_access_token=personal_access_token,
            expiration_date=expiration_date,
            additional_metadata=additional_metadata,
        )
        return secret

    def set_personal_access_tokens(self, enabled: bool) -> None:
        """Switch the environment setting (Dynatrace's `patEnabled`): off refuses new personal access
        tokens (400) and makes existing ones fail authentication (401), until it is on again."""
        self.allow_personal_access_tokens = bool(enabled)

    def usable(self, record: TokenRecord) -> bool:
        """Whether `record` would authenticate now: enabled, unexpired, and not a disabled kind."""
        return (
            record.enabled
            and not record.is_expired(self.clock())
            and (self.allow_personal_access_tokens or not record.personal_access_token)
        )

    def use_token(self, token: TokenSecret | str, ip_address: str = DEFAULT_CONSUMER_ADDRESS) -> bool:
        """A consumer uses the token (by id or secret), as any authenticated call would: `lastUsedDate`
        becomes the emulator clock's now. False, and nothing changes, when the token would not
        authenticate (disabled, expired, a personal access token while they are off).
        Raises KeyError for an unknown token."""
        record = self.record_of(token)
        if record is None:
            raise KeyError(token.token_id if isinstance(token, TokenSecret) else token)
        if not self.usable(record):
            return False
        self.store.mark_used(record, now=self.clock(), ip_address=ip_address)
        return True

    def usage_round(self, ratio: float | None = None) -> list[str]:
        """One round of the simulated consumers: each usable token, in creation order, is used with
        probability `ratio` (default: the fault configuration's `usage_ratio`) from one of a few fake
        addresses; the draws come from a random seeded by the emulator's seed. Returns the ids used."""
        share = self.faults.config.usage_ratio if ratio is None else ratio
        if share <= 0:
            return []
        used: list[str] = []
        draw = self._usage_random
        now = self.clock()
        for record in self.store:
            if not self.usable(record) or draw.random() >= share:
                continue
            self.store.mark_used(record, now=now, ip_address=draw.choice(CONSUMER_ADDRESSES))
            used.append(record.id)
        return used

    def record_of(self, token: TokenSecret | str) -> TokenRecord | None:
        """The record behind a secret or an id (for assertions)."""
        if isinstance(token, TokenSecret):
            return self.store.by_secret(token.reveal())
        return self.store.get(token)

    def flush(self) -> None:
        """Save the state file now (uses since the last mutation are otherwise not yet saved)."""
        if self.state_file is not None:
            self.state_file.save(self.store.states())

    def _persist(self, store: TokenStore) -> None:
        if self.state_file is not None:
            self.state_file.save(store.states())

    def _usable_admin(self, record: TokenRecord | None) -> bool:
        return (
            record is not None
            and record.enabled
            and not record.is_expired(self.clock())
            and all(scope in record.scopes for scope in ADMIN_SCOPES)
        )

    def _bootstrap_admin(self, wanted: TokenSecret | None) -> TokenSecret:
        """Reuse `wanted` when it still works here, import it when well-formed but unknown, else mint one."""
        if wanted is not None:
            if self._usable_admin(self.store.by_secret(wanted.reveal())):
                return wanted
            value = wanted.reveal()
            if TOKEN_PATTERN.fullmatch(value) and self.store.by_secret(value) is None:
                token_id = value.rsplit(".", 1)[0]
                if token_id not in self.store:
                    self.store.create(
                        name=ADMIN_TOKEN_NAME,
                        scopes=ADMIN_SCOPES,
                        owner=ADMIN_OWNER,
                        now=self.clock(),
                        secret=value,
                    )
                    return wanted
        return self.create_token(ADMIN_TOKEN_NAME, ADMIN_SCOPES, owner=ADMIN_OWNER)
