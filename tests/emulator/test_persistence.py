"""--state-file: tokens and their secrets survive a restart; a torn or edited file is refused."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from apitoken_emulator import start_emulator
from apitoken_emulator.persistence import StateFileError
from apitoken_operator.dynatrace.secrets import TokenSecret, contains_secret
from tests.emulator.helpers import API, client, create


async def test_restart_keeps_tokens_and_secrets(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    async with start_emulator(state_file=state, validate_responses=True) as emulator:
        admin = emulator.admin_token
        async with client(emulator) as api:
            created = await create(api, name="kept", scopes=["apiTokens.read"], expirationDate="now+1d")
            gone = await create(api, name="deleted")
            await api.delete(f"{API}/{gone['id']}")
            await api.put(f"{API}/{created['id']}", json={"name": "renamed"})
            before = (await api.get(f"{API}/{created['id']}")).json()
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
        assert not contains_secret(state.read_text())

    async with start_emulator(state_file=state, admin_token=admin, validate_responses=True) as emulator:
        assert emulator.admin_token == admin  # reused, not minted again
        assert len(emulator.store) == 2
        async with client(emulator, TokenSecret(created["token"])) as http:
            after = (await http.get(f"{API}/{created['id']}")).json()
            assert (await http.get(f"{API}/{gone['id']}")).status_code == 404
        assert after["name"] == "renamed"
        for key in ("creationDate", "expirationDate", "modifiedDate", "scopes", "owner"):
            assert after[key] == before[key]
        assert "lastUsedDate" in after  # its own GET just used it


async def test_uses_are_saved_at_shutdown(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    async with start_emulator(state_file=state) as emulator, client(emulator) as api:
        await api.get(API)
    saved = json.loads(state.read_text())["tokens"]
    assert saved[0]["lastUsedDate"]


async def test_new_token_order_continues_after_restart(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    async with start_emulator(state_file=state) as emulator:
        first = emulator.create_token("first").token_id
    async with start_emulator(state_file=state) as emulator:
        second = emulator.create_token("second").token_id
        async with client(emulator) as api:
            listed = [
                token["id"]
                for token in (await api.get(API, params={"sort": "+creationDate"})).json()["apiTokens"]
            ]
    assert listed.index(first) < listed.index(second)


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # torn write
        lambda text: "",
        lambda text: text.replace('"kept"', '"edited"'),  # checksum no longer matches
        lambda text: json.dumps({"tokens": []}),
        lambda text: text.replace('"version": 1', '"version": 99'),
    ],
)
async def test_damaged_file_is_refused(tmp_path: Path, damage: object) -> None:
    state = tmp_path / "state.json"
    async with start_emulator(state_file=state) as emulator:
        emulator.create_token("kept")
    assert callable(damage)
    state.write_text(damage(state.read_text()))
    with pytest.raises(StateFileError, match="refusing to load") as caught:
        async with start_emulator(state_file=state):
            pass
    assert "Move it aside or delete it" in str(caught.value)


async def test_no_temporary_files_are_left(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    async with start_emulator(state_file=state) as emulator:
        for index in range(5):
            emulator.create_token(f"t{index}")
    assert os.listdir(tmp_path) == ["state.json"]
