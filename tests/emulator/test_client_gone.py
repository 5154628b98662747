"""A client that dies half-way through sending a request (an operator killed by kill -9) is not the
emulator's fault: the request counts as dropped, and the contract check stays clean."""

from __future__ import annotations

import asyncio
import urllib.parse

from apitoken_emulator import Emulator
from tests.emulator.helpers import API


async def test_a_request_cut_off_mid_body_is_dropped_not_a_contract_violation(emulator: Emulator) -> None:
    address = urllib.parse.urlsplit(emulator.base_url)
    _reader, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(
        (
            f"POST {API} HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Authorization: Api-Token {emulator.admin_token.reveal()}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            '{"name": "cut off"'
        ).encode()
    )
    await writer.drain()
    writer.transport.abort()  # gone before the body is complete, as a killed process would be

    for _ in range(500):  # up to 10 s for the server to notice
        if emulator.counters.count("create", "dropped"):
            break
        await asyncio.sleep(0.02)
    assert emulator.counters.count("create", "dropped") == 1
    assert emulator.contract_violations == []
    assert len(emulator.store) == 1  # the admin token only: nothing was created
