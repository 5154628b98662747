"""The `--state-file`: tokens survive a restart, and a torn or edited file is refused, never half-loaded.

The file is JSON with a SHA-256 checksum over its token list. It is written atomically (a temporary file
in the same directory, fsync, `os.replace`, fsync of the directory) with mode 0600. It holds only
secret hashes, yet it is still the keys to a (local) kingdom, hence the mode.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from apitoken_emulator.tokens import TokenRecord

__all__ = ["StateFile", "StateFileError", "write_private_file"]

FORMAT = "apitoken-operator-emulator-state"
VERSION = 1


class StateFileError(Exception):
    """The state file exists but cannot be trusted; the message says what to do."""


def _checksum(tokens: list[dict[str, Any]]) -> str:
    canonical = json.dumps(tokens, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[TokenRecord] | None:
        """The saved tokens, or None when there is no file yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            document = json.loads(raw)
            if not isinstance(document, dict) or document.get("format") != FORMAT:
                raise ValueError("it is not an emulator state file")
            if document.get("version") != VERSION:
                raise ValueError(f"its version {document.get('version')!r} is not {VERSION}")
            tokens = document["tokens"]
            if not isinstance(tokens, list) or document.get("checksum") != _checksum(tokens):
                raise ValueError("its checksum does not match its content (torn write or edited by hand)")
            return [TokenRecord.from_state(entry) for entry in tokens]
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise StateFileError(
                f"refusing to load the emulator state file {self.path}: {error}. "
                "Move it aside or delete it to start with an empty environment."
            ) from error

    def save(self, tokens: list[dict[str, Any]]) -> None:
        document = {"format": FORMAT, "version": VERSION, "checksum": _checksum(tokens), "tokens": tokens}
        write_private_file(self.path, json.dumps(document, indent=1).encode("utf-8"))


def write_private_file(path: Path, data: bytes) -> None:
    """Replace `path` atomically with `data` (mode 0600): readers see the old file or the new, never a mix."""
    directory = path.parent
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
