"""Where the source tree keeps what the dev tools use (CRDs, examples), found from this file."""

from __future__ import annotations

import pathlib

SOURCE_ROOT = pathlib.Path(__file__).resolve().parents[2]  # from a checkout: dev/apitoken_devenv/


def default_crd_files() -> list[pathlib.Path]:
    return sorted((SOURCE_ROOT / "crds").glob("*.yaml"))
