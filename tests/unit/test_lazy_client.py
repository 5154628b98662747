"""kubernetes_asyncio's models and APIs are loaded when used: the operator's memory at start-up."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

OPERATOR = pathlib.Path(__file__).resolve().parents[2] / "operator"

PROBE = """
import asyncio, json, sys
import apitoken_operator.runner, apitoken_operator.handlers, kopf
from apitoken_operator.kube import api
import kubernetes_asyncio.client as client
models = [m for m in sys.modules if m.startswith("kubernetes_asyncio.client.models.")]


async def deserialized():
    async with client.ApiClient() as api_client:
        answer = {"metadata": {"name": "s", "labels": {"a": "b"}}, "type": "Opaque"}
        return api_client.deserialize(type("R", (), {"data": json.dumps(answer)})(), "V1Secret")


secret = asyncio.run(deserialized())
print(json.dumps({
    "models": len(models),
    "secret": [type(secret).__name__, secret.metadata.name, secret.metadata.labels, secret.type],
    "listed": "V1Pod" in dir(client) and "CoreV1Api" in dir(client.api),
    "missing": not hasattr(client, "NoSuchModel"),
    "pod": client.V1Pod.__module__,
}))
"""


def _probe() -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(OPERATOR), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_the_operator_loads_a_few_models_and_the_client_still_finds_any_of_them() -> None:
    found = _probe()
    assert found["models"] < 50  # of ~770: those the operator's modules and kopf name
    assert found["secret"] == [
        "V1Secret",
        "s",
        {"a": "b"},
        "Opaque",
    ]  # by class name, as the client does
    assert found["listed"] is True
    assert found["missing"] is True  # an unknown name is an AttributeError, as before
    assert found["pod"] == "kubernetes_asyncio.client.models.v1_pod"  # loaded at first use
