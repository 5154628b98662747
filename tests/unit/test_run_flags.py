"""`run --standalone`: the explicit spelling of the default (the chart and deploy/ pass it), never
combinable with `--peering`."""

from __future__ import annotations

import argparse

import pytest

from apitoken_operator import cli
from apitoken_operator.runner import settings_from


def run_args(*argv: str) -> argparse.Namespace:
    arguments = ["run", *argv]
    return cli.build_parser(arguments).parse_args(arguments)


def test_standalone_is_the_default_spelled_out() -> None:
    implicit, explicit = run_args(), run_args("--standalone")
    assert implicit.peering is None and explicit.peering is None
    assert settings_from(explicit) == settings_from(implicit)
    assert settings_from(explicit).peering is False


def test_standalone_and_peering_are_refused_together(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_args("--standalone", "--peering", "apitoken-operator")
    assert exit_info.value.code == 2
    assert "not allowed with argument --standalone" in capsys.readouterr().err
    assert settings_from(run_args("--peering", "apitoken-operator")).peering is True
