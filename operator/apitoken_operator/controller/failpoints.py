"""Points where a test can kill the operator, like kill -9, to prove each step of a create or delete
survives a crash. Built once at start-up and handed to the reconciler; production runs with none armed.

`APITOKEN_OPERATOR_CRASH_AT=STEP` (or `STEP:N`, the Nth pass, so that a run with many objects can be
cut at a different moment each time) arms one point; the tests set it for the operator they start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

ENVIRONMENT_VARIABLE = "APITOKEN_OPERATOR_CRASH_AT"
#: where a create (first token, replacement, rotation) can be interrupted
CREATE_STEPS = ("after-intent", "after-create", "after-secret", "before-status")
#: where deleting a token (object deletion, replacement without grace, end of a grace period) can be
DELETE_STEPS = ("before-token-delete", "after-token-delete")
#: the exit status, as a shell reports kill -9
KILLED = 137


class FailPoints:
    def __init__(self, armed: str | None = None) -> None:
        """`armed`: `STEP` or `STEP:N`; None arms nothing."""
        self._step: str | None = None
        self._nth = 1
        if armed:
            step, _, nth = armed.partition(":")
            if step not in (*CREATE_STEPS, *DELETE_STEPS):
                raise ValueError(f"{ENVIRONMENT_VARIABLE}: no such step {step!r}")
            self._step, self._nth = step, int(nth or 1)
        self._passes = 0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> FailPoints:
        return cls(environ.get(ENVIRONMENT_VARIABLE) or None)

    @property
    def armed(self) -> str | None:
        return self._step

    def reached(self, step: str) -> None:
        """Exit at once when this is the armed step's Nth pass; otherwise nothing."""
        if step != self._step:
            return
        self._passes += 1
        if self._passes >= self._nth:
            logging.shutdown()
            os._exit(KILLED)
