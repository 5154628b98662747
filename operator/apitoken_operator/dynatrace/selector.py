"""The `apiTokenSelector` grammar of the list operation: render, parse and match.

    selector  := "" | criterion ("," criterion)*
    criterion := 'owner(' string ')' | 'personalAccessToken(' ('true' | 'false') ')'
               | 'scope(' string ("," string)* ')'
    string    := '"' (any character but '"' and '\\' | '\\"' | '\\\\')* '"'

Whitespace is allowed around every token. Criteria combine with AND, the scopes of one `scope(...)`
with OR (Dynatrace's documented semantics). Each criterion may appear once: a second `owner` would be
either always false or redundant, so it is reported rather than guessed at. Dynatrace does not
document escaping inside the quotes; backslash escapes for `"` and `\\` are this project's choice, used
by both the client (render) and the emulator (parse), so any owner or scope name round-trips.

Pure functions, no I/O: the client renders selectors, the emulator parses and matches them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Selector", "SelectorSyntaxError", "parse"]


class SelectorSyntaxError(ValueError):
    """The text is not a valid `apiTokenSelector`; the message names the position and what was expected."""

    def __init__(self, text: str, position: int, expected: str) -> None:
        self.text = text
        self.position = position
        self.expected = expected
        super().__init__(f"invalid apiTokenSelector at position {position}: expected {expected}")


class SelectableToken(Protocol):
    """What `Selector.matches` reads: both the client's `ApiToken` model and the emulator's record fit."""

    @property
    def owner(self) -> str | None: ...

    @property
    def personal_access_token(self) -> bool | None: ...

    @property
    def scopes(self) -> Sequence[str] | None: ...


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Selector:
    """Criteria a listed token must all meet; `None` (or no scopes) leaves a criterion out."""

    owner: str | None = None
    personal_access_token: bool | None = None
    scopes: tuple[str, ...] = ()

    def render(self) -> str:
        """The query parameter value, e.g. `owner("a"),personalAccessToken(false),scope("x","y")`."""
        parts: list[str] = []
        if self.owner is not None:
            parts.append(f"owner({_quote(self.owner)})")
        if self.personal_access_token is not None:
            parts.append(f"personalAccessToken({'true' if self.personal_access_token else 'false'})")
        if self.scopes:
            parts.append(f"scope({','.join(_quote(scope) for scope in self.scopes)})")
        return ",".join(parts)

    def is_empty(self) -> bool:
        return self.owner is None and self.personal_access_token is None and not self.scopes

    def matches(self, token: SelectableToken) -> bool:
        """All criteria must hold; any one of the selector's scopes suffices.

        A token whose field is unknown (`None`, e.g. not requested in a list) does not match a
        criterion on that field: a selector never admits a token it cannot vouch for.
        """
        if self.owner is not None and token.owner != self.owner:
            return False
        if (
            self.personal_access_token is not None
            and token.personal_access_token != self.personal_access_token
        ):
            return False
        if self.scopes:
            held = token.scopes
            if not held or not any(scope in held for scope in self.scopes):
                return False
        return True


def parse(text: str) -> Selector:
    """Parse a selector; an empty or blank text is the empty selector (matches everything)."""
    return _Parser(text).selector()


class _Parser:
    """A small recursive-descent parser; positions in errors are 0-based offsets into the text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, expected: str) -> SelectorSyntaxError:
        return SelectorSyntaxError(self.text, self.pos, expected)

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def expect(self, literal: str) -> None:
        self.skip_space()
        if not self.text.startswith(literal, self.pos):
            raise self.fail(repr(literal))
        self.pos += len(literal)

    def keyword(self) -> str:
        self.skip_space()
        for word in ("owner", "personalAccessToken", "scope"):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return word
        raise self.fail("owner(...), personalAccessToken(...) or scope(...)")

    def string(self) -> str:
        self.expect('"')
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(chars)
            if char == "\\":
                following = self.text[self.pos + 1 : self.pos + 2]
                if following not in ('"', "\\"):
                    self.pos += 1
                    raise self.fail('\\" or \\\\ after a backslash')
                chars.append(following)
                self.pos += 2
                continue
            chars.append(char)
            self.pos += 1
        raise self.fail("a closing '\"'")

    def boolean(self) -> bool:
        self.skip_space()
        for word, value in (("true", True), ("false", False)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return value
        raise self.fail("true or false")

    def selector(self) -> Selector:
        owner: str | None = None
        personal: bool | None = None
        scopes: tuple[str, ...] = ()
        seen: set[str] = set()
        if self.at_end():
            return Selector()
        while True:
            start = self.pos
            word = self.keyword()
            if word in seen:
                self.pos = start
                raise self.fail(f"each criterion once, but {word}(...) is repeated")
            seen.add(word)
            self.expect("(")
            if word == "owner":
                owner = self.string()
            elif word == "personalAccessToken":
                personal = self.boolean()
            else:
                values = [self.string()]
                while self._take(","):
                    values.append(self.string())
                scopes = tuple(values)
            self.expect(")")
            if self.at_end():
                return Selector(owner=owner, personal_access_token=personal, scopes=scopes)
            self.expect(",")

    def _take(self, literal: str) -> bool:
        self.skip_space()
        if self.text.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False
