"""The name a new token carries until its secret is stored: the proof that a leftover is this create's.

Names are not unique in Dynatrace, and a create whose answer was lost leaves a token that only its name
and owner describe. Another operator on the same environment (another cluster applying the same
manifests, with the same admin credential) may have made a token of the same name and owner a moment
earlier; taking that one for a leftover and deleting it would break its consumers. So a create sends a
name nobody else sends — the declared name with the attempt's random id — and the token gets its
declared name (and enabled state) back in one update once its secret is in the Secret. A leftover is
then exactly a token that still has the marked name its intent recorded: this attempt's beyond doubt.

Pure functions; no I/O.
"""

from __future__ import annotations

import re

#: The declared name is cut to this many characters in the marked name (the mark adds 44), so the
#: marked name stays within the 255 characters spec.name allows.
_NAME_ROOM = 211
_MARK = re.compile(r" \[creating ([0-9a-f]{32})\]\Z")


def marked_name(name: str, attempt: str) -> str:
    """The name a create sends: unique to `attempt` (32 hex digits, a uuid4)."""
    if not re.fullmatch(r"[0-9a-f]{32}", attempt):
        raise ValueError("an attempt id is 32 lowercase hex digits")
    return f"{name[:_NAME_ROOM]} [creating {attempt}]"


def attempt_of(name: str | None) -> str | None:
    """The attempt a marked name belongs to, or None for any other name."""
    if not name:
        return None
    match = _MARK.search(name)
    return match[1] if match else None


def is_marked(name: str | None) -> bool:
    return attempt_of(name) is not None
