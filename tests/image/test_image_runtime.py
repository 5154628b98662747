"""The image venv's operator, started with the Dockerfile's ENTRYPOINT and CMD as the container would be:
UID 65532, read-only root filesystem, one writable tmpfs for /tmp (see helpers.py). It must answer its
liveness probe, serve metrics on request, reconcile an ApiToken and stop cleanly on SIGTERM, without
writing a byte into its venv.

Two deliberate departures from the CMD, both because this runs in the test session's shared cluster:
`--all-namespaces` becomes `--namespace <the test's namespace>` (not to touch other tests' objects), and
the probe listens on a free port of 127.0.0.1. Credentials come through KUBECONFIG (with the certificate
files inlined and readable by the image's user) instead of the in-cluster ServiceAccount.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import subprocess
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from apitoken_devenv.controlplane import free_port
from tests.fixtures.cluster import Cluster, wait_until
from tests.fixtures.operator import CONNECTION, OperatorEnv
from tests.image.dockerfile import Dockerfile
from tests.image.helpers import Installed, image_env, snapshot, writable_dir

pytestmark = pytest.mark.controlplane

_FILE_KEYS = {
    "certificate-authority": "certificate-authority-data",
    "client-certificate": "client-certificate-data",
    "client-key": "client-key-data",
}


def inlined_kubeconfig(cluster: Cluster, target: pathlib.Path, owner: tuple[int, int] | None) -> pathlib.Path:
    """The cluster's kubeconfig with its certificate and key files inlined, readable only by `owner`."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for entry in [*(c["cluster"] for c in config["clusters"]), *(u["user"] for u in config["users"])]:
        for key, data_key in _FILE_KEYS.items():
            if key in entry:
                entry[data_key] = base64.b64encode(pathlib.Path(entry.pop(key)).read_bytes()).decode()
    target.write_text(yaml.safe_dump(config))
    target.chmod(0o600)
    if owner is not None:
        os.chown(target, *owner)
    return target


def get(url: str) -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_image_command_runs_read_only_as_the_image_user(
    installed: Installed, dockerfile: Dockerfile, operator_env: OperatorEnv
) -> None:
    entrypoint = dockerfile.final.all("ENTRYPOINT")[-1].exec_form
    command = dockerfile.final.all("CMD")[-1].exec_form
    assert entrypoint and command
    argv = [*entrypoint, *command]
    argv[argv.index("--all-namespaces") : argv.index("--all-namespaces") + 1] = [
        "--namespace",
        operator_env.namespace,
    ]
    probe_port, metrics_port = free_port(), free_port()
    liveness = urlsplit(argv[argv.index("--liveness") + 1])
    probe_url = urlunsplit(liveness._replace(netloc=f"127.0.0.1:{probe_port}"))
    argv[argv.index("--liveness") + 1] = probe_url
    argv += [
        "--metrics-port",
        str(metrics_port),
        "--default-connection",
        f"{operator_env.namespace}/{CONNECTION}",
        "--allow-insecure-http",  # the test emulator serves plain http
    ]

    writable = writable_dir(installed.base)
    env = image_env(dockerfile, prefix=installed.prefix, writable=writable)
    env["KUBECONFIG"] = str(
        inlined_kubeconfig(
            operator_env.cluster, installed.base / f"kubeconfig-{probe_port}", installed.sandbox.user
        )
    )
    log = operator_env.workdir / "image-operator.log"
    operator_env.logs.append(log)
    operator_env.leak_sources.add_file(log)
    before = snapshot(installed.prefix)
    with log.open("ab") as sink:
        operator_env.process = subprocess.Popen(
            installed.sandbox.wrap(argv, writable=writable),
            env=env,
            cwd="/",
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def probe() -> tuple[int, str] | None:
        assert operator_env.process is not None and operator_env.process.poll() is None, (
            f"the operator exited ({installed.sandbox.describe()}):\n{operator_env.log_text()[-3000:]}"
        )
        return get(probe_url)

    status, body = wait_until(probe, timeout=60, what="the liveness probe")
    assert status == 200
    json.loads(body)  # kopf answers with its probes' results, a JSON object

    operator_env.apply("from-image", {"name": "from-image", "scopes": ["metrics.read"]})
    ready = operator_env.wait_ready("from-image", timeout=60)
    assert operator_env.secret_value(ready["status"]["secretName"]) is not None

    metrics = get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert metrics is not None and metrics[0] == 200
    assert "apitoken_operator_reconciles_total" in metrics[1]

    process = operator_env.process
    os.killpg(process.pid, 15)
    started = time.monotonic()
    assert process.wait(timeout=30) == 0, operator_env.log_text()[-3000:]
    assert time.monotonic() - started < 30
    assert snapshot(installed.prefix) == before, "the operator wrote into its venv"
