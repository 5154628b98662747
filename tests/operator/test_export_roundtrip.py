"""export → apply → the operator adopts every token, with no create and no PUT when nothing differs."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
import yaml

from apitoken_operator.dynatrace.secrets import TOKEN_PATTERN
from tests.fixtures.operator import GROUP, PLURAL, VERSION, OperatorEnv, settle

pytestmark = pytest.mark.controlplane


def test_export_round_trip_adopts_everything_without_creates_or_puts(operator_env: OperatorEnv, tmp_path):
    emulator = operator_env.emulator
    owner = emulator.emulator.record_of(emulator.admin_token).owner
    later = emulator.clock() + timedelta(days=40)
    shapes = [
        {"name": "ci", "scopes": ["metrics.read"]},
        {"name": "ci", "scopes": ["metrics.read", "logs.read"]},  # names are not unique
        {"name": "disabled one", "scopes": ["entities.read"], "enabled": False},
        {"name": "expiring", "scopes": ["events.ingest"], "expiration_date": later},
        {"name": "Überwachung ✓", "scopes": ["problems.read"]},
    ]
    made = [emulator.create_token(owner=owner, **shape).token_id for shape in shapes]
    token_file = tmp_path / "token"
    token_file.write_text(emulator.admin_token.reveal() + "\n")
    token_file.chmod(0o600)
    exported = subprocess.run(
        [
            sys.executable,
            "-m",
            "apitoken_operator",
            "export",
            "--url",
            emulator.base_url,
            "--token-file",
            str(token_file),
            "--namespace",
            operator_env.namespace,
            "--output",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert not TOKEN_PATTERN.search(exported.stdout + exported.stderr)
    operator_env.leak_sources.add_text("exported manifests", exported.stdout + exported.stderr)
    manifests = [d for d in yaml.safe_load_all(exported.stdout) if d]
    assert sorted(m["spec"]["adoptTokenId"] for m in manifests) == sorted(made)
    for manifest in manifests:
        operator_env.custom.create_namespaced_custom_object(
            GROUP, VERSION, operator_env.namespace, PLURAL, manifest
        )
    before = emulator.counters.snapshot()
    operator_env.start()
    for manifest in manifests:
        body = operator_env.wait_ready(manifest["metadata"]["name"])
        assert body["status"]["id"] == manifest["spec"]["adoptTokenId"]
        assert body["status"]["secretAvailable"] is False
    settle(1.0)
    after = emulator.counters.snapshot()
    assert after.get("create", {}) == before.get("create", {}), "no create"
    assert after.get("update", {}) == before.get("update", {}), "no PUT"
    assert after.get("delete", {}) == before.get("delete", {})
    assert sorted(t.id for t in operator_env.live_tokens()) == sorted(made)
