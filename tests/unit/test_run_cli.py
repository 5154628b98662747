"""`apitoken-operator run` as a command: usage errors, `--kubeconfig`, and the JSON log lines."""

from __future__ import annotations

import datetime
import json
import logging
import pathlib

import kopf
import pytest

from apitoken_operator import cli, runner
from apitoken_operator.dynatrace.secrets import install_log_masking

FAKE_SECRET = "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX." + "A" * 64  # token-shaped, never a real one


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--default-connection", "no-slash"], "--default-connection must be NAMESPACE/SECRET"),
        (["--list-page-size", "5"], "--list-page-size must be 100..10000"),
        (["--allow-connection-cidr", "10.0.0.0/33"], "--allow-connection-cidr '10.0.0.0/33': "),
        (["--policy-allow-escalating-scope", "settings.*"], "takes an exact scope name, not a pattern"),
        (["--policy-allow-escalating-scope", "metrics.read"], "not a denied scope"),
        (["--kubeconfig", "/nonexistent/kubeconfig"], "--kubeconfig /nonexistent/kubeconfig: not a readable"),
    ],
)
def test_a_usage_error_exits_2_with_one_line_on_stderr(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Like argparse's own errors (a command line that makes no sense is status 2, not 1), before kopf
    or any client starts."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", *argv])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("apitoken-operator run: error: "), captured.err
    assert message in captured.err
    assert captured.err.count("\n") == 1, captured.err  # one line, no traceback


def test_kubeconfig_is_made_absolute_for_kopf(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kopf reads the file from $KUBECONFIG later, by itself: the path must not depend on the cwd."""
    (tmp_path / "config").write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.chdir(tmp_path)
    assert runner.kubeconfig_path("config") == str(tmp_path / "config")
    assert runner.kubeconfig_path(None) is None
    with pytest.raises(SystemExit) as exit_info:
        runner.kubeconfig_path(str(tmp_path))  # a directory
    assert exit_info.value.code == 2


# --- JSON log lines --------------------------------------------------------------------------------------


def _format(
    logger_name: str, message: str, *args: object, exc: BaseException | None = None, **extra: object
) -> dict[str, object]:
    install_log_masking()  # as `run` does: records are masked where they are born
    logger = logging.getLogger(logger_name)
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    record = logger.makeRecord(
        logger_name, logging.WARNING, __file__, 1, message, args, exc_info, extra=extra
    )
    entry: dict[str, object] = json.loads(runner.JsonFormatter().format(record))
    return entry


def test_the_time_is_iso_8601_in_utc_with_its_offset() -> None:
    before = datetime.datetime.now(datetime.UTC)
    entry = _format("apitoken_operator.test", "hello")
    stamp = datetime.datetime.fromisoformat(str(entry["time"]))
    assert str(entry["time"]).endswith("+00:00")
    assert stamp.utcoffset() == datetime.timedelta(0)
    assert before - datetime.timedelta(seconds=1) <= stamp <= datetime.datetime.now(datetime.UTC)


def test_kopfs_object_loggers_give_namespace_and_name() -> None:
    """kopf's `logger` for an object (handlers, kopf.objects) carries the object: the line says which."""
    body = kopf.Body({"apiVersion": "v1", "kind": "X", "metadata": {"namespace": "team-a", "name": "otel"}})
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    objects = logging.getLogger("kopf.objects")
    handler, level = Keep(), objects.level
    objects.addHandler(handler)
    objects.setLevel(logging.INFO)
    try:
        kopf.LocalObjectLogger(body=body, settings=kopf.OperatorSettings()).info("Handler succeeded.")
    finally:
        objects.removeHandler(handler)
        objects.setLevel(level)
    (record,) = records
    entry = json.loads(runner.JsonFormatter().format(record))
    assert (entry["namespace"], entry["name"], entry["message"]) == ("team-a", "otel", "Handler succeeded.")


def test_an_object_passed_in_extra_gives_namespace_and_name() -> None:
    entry = _format("apitoken_operator.anything", "stored", k8s_ref={"namespace": "ns", "name": "a.b"})
    assert (entry["namespace"], entry["name"]) == ("ns", "a.b")


@pytest.mark.parametrize(
    ("logger_name", "message", "args", "expected"),
    [
        ("apitoken_operator.controller.reconciler", "%s: %s", ("team-a/otel", "waiting"), ("team-a", "otel")),
        ("apitoken_operator.controller.runtime", "%s/%s: reconcile failed", ("ns", "x.y"), ("ns", "x.y")),
        ("apitoken_operator.controller.runtime", "drift check of connection %s failed", ("ns/c",), None),
        ("apitoken_operator.kube.events", "%s: not posted", ("ns/name",), None),  # not an object line
        ("apitoken_operator.controller.reconciler", "%s: x", ("Team/UPPER",), None),  # not a k8s name
    ],
)
def test_the_operators_own_object_lines_give_namespace_and_name(
    logger_name: str, message: str, args: tuple[str, ...], expected: tuple[str, str] | None
) -> None:
    """Until the controller passes `extra`, its "<namespace>/<name>: ..." lines are read by their prefix."""
    entry = _format(logger_name, message, *args)
    if expected is None:
        assert "namespace" not in entry and "name" not in entry
    else:
        assert (entry["namespace"], entry["name"]) == expected


def test_no_secret_reaches_a_json_line() -> None:
    try:
        raise RuntimeError(f"Dynatrace said: {FAKE_SECRET}")
    except RuntimeError as error:
        entry = _format(
            "apitoken_operator.controller.runtime", "ns/a: failed with %s", FAKE_SECRET, exc=error
        )
    line = json.dumps(entry)
    assert FAKE_SECRET not in line and FAKE_SECRET[-64:] not in line
    assert "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX" in str(entry["exception"])  # the id stays, for diagnosis


def test_run_logs_json_lines_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        runner.configure_logging(log_format="json", verbose=False)
        logging.getLogger("apitoken_operator.controller.reconciler").info("%s: ready", "ns/a")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    (line,) = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    assert (entry["level"], entry["namespace"], entry["name"], entry["message"]) == (
        "INFO",
        "ns",
        "a",
        "ns/a: ready",
    )
