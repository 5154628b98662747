"""kopf logs in with the operator client's credentials: --kubeconfig wins over a mounted ServiceAccount."""

from __future__ import annotations

import pathlib
from typing import Any

import kopf
import pytest
import yaml
from kopf._core.intents.causes import Activity

from apitoken_operator.controller.runtime import Options
from apitoken_operator.handlers import Operator, build_registry
from apitoken_operator.settings import OperatorSettings

IN_CLUSTER = kopf.ConnectionInfo(server="https://in-cluster.invalid", token="sa")


def _login(kubeconfig: str | None) -> kopf.ConnectionInfo | None:
    registry = build_registry(Operator(Options(settings=OperatorSettings(), kubeconfig=kubeconfig)))
    (handler,) = registry._activities.get_handlers(activity=Activity.AUTHENTICATION)
    result: kopf.ConnectionInfo | None = handler.fn(settings=kopf.OperatorSettings(), logger=None)
    return result


@pytest.fixture
def in_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod: the ServiceAccount login finds its token."""
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: IN_CLUSTER)


def _kubeconfig(path: pathlib.Path) -> pathlib.Path:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://from-kubeconfig.invalid:6443"}}],
        "users": [{"name": "u", "user": {"token": "kc"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.usefixtures("in_a_pod")
def test_in_a_pod_kubeconfig_wins(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = _kubeconfig(tmp_path / "config")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # as runner.main sets it
    info = _login(str(kubeconfig))
    assert info is not None and info.server == "https://from-kubeconfig.invalid:6443"


@pytest.mark.usefixtures("in_a_pod")
def test_in_a_pod_without_kubeconfig_the_service_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert _login(None) == IN_CLUSTER
