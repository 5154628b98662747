"""The "realistic" profile and the new settings: Python, admin endpoint and CLI flags agree."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from apitoken_emulator import Emulator, FaultConfig, start_emulator
from apitoken_emulator.command import _fault_config, add_arguments
from apitoken_emulator.faults import Paging
from tests.emulator.helpers import API, client, eventually, list_all
from tests.emulator.test_cli import running

REALISTIC = {
    "list_latency": 2.0,
    "list_latency_per_1000": 0.2,
    "get_latency": 0.2,
    "retry_after": None,
    "rate_limit_reset": False,
    "throttle_wait": 10.0,
    "paging": "offset",
    "usage_interval": 1.0,
    "usage_ratio": 0.2,
    "compress": True,
    "rate_limit_ratio": 0.0,
    "throttle_capacity": None,
}


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--admin-token-file", "x", *argv])


@pytest.fixture
async def admin(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{emulator.base_url}/_emulator") as http:
        yield http


def test_the_realistic_profile_values() -> None:
    config = FaultConfig.realistic()
    assert {key: config.to_json()[key] for key in REALISTIC} == REALISTIC
    assert config.paging is Paging.OFFSET
    overridden = FaultConfig.realistic(rate_limit_ratio=0.1, paging="keyset")
    assert overridden.rate_limit_ratio == 0.1
    assert overridden.paging is Paging.KEYSET
    assert overridden.list_latency == 2.0


def test_defaults_stay_off() -> None:
    config = FaultConfig()
    assert config.paging is Paging.KEYSET
    assert config.usage_interval == config.throttle_wait == config.list_latency == config.get_latency == 0.0
    assert config.throttle_capacity is None
    assert config.compress is False
    assert FaultConfig.profile("default") == config


@pytest.mark.parametrize(
    "changes",
    [
        {"paging": "random"},
        {"usage_ratio": 1.5},
        {"throttle_wait": -1},
        {"list_latency": True},
        {"throttle_capacity": 0},
        {"throttle_capacity": 1.5},
        {"profile": "gentle"},
    ],
)
def test_invalid_new_settings(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages are checked by hand, they vary
        FaultConfig().merged(changes)


def test_json_round_trip() -> None:
    config = FaultConfig.realistic(throttle_capacity=4, operations=["list"])
    assert FaultConfig().merged(config.to_json()) == config


async def test_profile_over_the_admin_endpoint(emulator: Emulator, admin: httpx.AsyncClient) -> None:
    put = await admin.put("/faults", json={"profile": "realistic", "usage_interval": 0})
    assert put.status_code == 200
    assert put.json()["paging"] == "offset"
    assert put.json()["usage_interval"] == 0.0
    assert emulator.faults.config == FaultConfig.realistic(usage_interval=0)
    await admin.put("/faults", json={"rate_limit_ratio": 0.25})
    patched = (await admin.patch("/faults", json={"profile": "realistic"})).json()
    assert patched["rate_limit_ratio"] == 0.25  # PATCH: the profile's settings, the others kept
    assert patched["throttle_wait"] == 10.0
    back = (await admin.patch("/faults", json={"profile": "default"})).json()
    assert back == FaultConfig().to_json()
    assert (await admin.put("/faults", json={"profile": "nope"})).status_code == 400
    new = {"throttle_capacity": 3, "get_latency": 0.5, "paging": "offset", "usage_ratio": 0.5}
    assert {key: (await admin.patch("/faults", json=new)).json()[key] for key in new} == new


def test_cli_flags_parse() -> None:
    assert _fault_config(_parse()) == FaultConfig()
    assert _fault_config(_parse("--profile", "realistic")) == FaultConfig.realistic()
    config = _fault_config(
        _parse(
            "--profile",
            "realistic",
            "--retry-after",
            "3",
            "--paging",
            "keyset",
            "--throttle-capacity",
            "8",
            "--usage-interval",
            "0",
        )
    )
    assert config == FaultConfig.realistic(
        retry_after=3.0, paging="keyset", throttle_capacity=8, usage_interval=0.0
    )
    flags = _parse(
        "--list-latency",
        "1",
        "--list-latency-per-1000",
        "0.5",
        "--get-latency",
        "0.3",
        "--throttle-wait",
        "4",
        "--usage-ratio",
        "0.1",
        "--no-retry-after",
        "--fault-operations",
        "list,get",
    )
    assert _fault_config(flags) == FaultConfig(
        list_latency=1.0,
        list_latency_per_1000=0.5,
        get_latency=0.3,
        throttle_wait=4.0,
        usage_ratio=0.1,
        retry_after=None,
        operations=frozenset({"list", "get"}),
    )
    assert _fault_config(_parse("--retry-after", "2")).retry_after == 2.0


def test_the_cli_serves_the_profile(tmp_path: Path) -> None:
    with running(
        tmp_path / "admin-token",
        "--profile",
        "realistic",
        "--usage-interval",
        "0",
        "--no-personal-access-tokens",
    ) as url:
        faults = httpx.get(f"{url}/_emulator/faults").json()
        assert faults == FaultConfig.realistic(usage_interval=0).to_json()
        assert httpx.get(f"{url}/_emulator/settings").json() == {"personal_access_tokens": False}


async def test_a_walk_under_the_realistic_profile_keeps_the_contract() -> None:
    fast = FaultConfig.realistic(list_latency=0.05, get_latency=0.01, usage_interval=0.05, usage_ratio=1.0)
    async with start_emulator(validate_responses=True, faults=fast) as emulator, client(emulator) as api:
        for index in range(150):
            emulator.create_token(f"t{index}")
        tokens = await list_all(api, pageSize=100, fields="+lastUsedDate,+lastUsedIpAddress")
        assert len(tokens) == 151
        answer = await api.get(f"{API}/{tokens[0]['id']}")
        assert answer.status_code == 200
        # compressed as the client accepts gzip, and the contract checked on what the client reads
        assert answer.headers["content-encoding"] == "gzip" and answer.json()["id"] == tokens[0]["id"]
        # an answer without a body (204) is sent as it is
        renamed = await api.put(f"{API}/{tokens[0]['id']}", json={"name": "renamed"})
        assert renamed.status_code == 204 and "content-encoding" not in renamed.headers
        last = emulator.store.get(tokens[-1]["id"])
        assert last is not None
        await eventually(lambda: last.last_used_date is not None, seconds=20)
        assert not emulator.contract_violations
