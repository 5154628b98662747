from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from apitoken_emulator import Emulator
from tests.emulator.helpers import client


@pytest.fixture
async def api(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the `emulator` fixture, authenticated with its admin token."""
    async with client(emulator) as http:
        yield http
