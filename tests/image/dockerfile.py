"""Just enough of Dockerfile and .dockerignore syntax to lint ours without Docker or hadolint.

`parse()` follows the reference (https://docs.docker.com/reference/dockerfile/): parser directives at
the top, comment lines (also inside a continuation), the escape character at a line's end joining it to
the next, empty continuation lines skipped, `--flag=value` options, exec (JSON) form, `AS name` in FROM,
and `$VAR` / `${VAR}` / `${VAR:-default}` substitution from the ARGs declared before the first FROM.
Heredocs are refused rather than half-understood.

`DockerIgnore` matches paths the way BuildKit does: patterns are cleaned, `**` crosses directories, a
pattern that matches a directory excludes everything under it, and the last matching pattern decides
(`!` re-includes).
"""

from __future__ import annotations

import json
import os.path
import re
from dataclasses import dataclass, field

INSTRUCTIONS = {
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_FLAG = re.compile(r"--([a-z][a-z-]*)(?:=(\S*))?")
_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class DockerfileError(ValueError):
    pass


@dataclass
class Instruction:
    line: int  # where the instruction starts, 1-based
    keyword: str  # upper-cased
    arguments: str  # continuations joined, flags included
    flags: dict[str, str] = field(default_factory=dict)
    rest: str = ""  # arguments after the leading --flags

    @property
    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form RUN/CMD/ENTRYPOINT, or None for shell form."""
        if not self.rest.startswith("["):
            return None
        try:
            value = json.loads(self.rest)
        except json.JSONDecodeError:
            return None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        return None

    def pairs(self) -> dict[str, str]:
        """ENV / LABEL / ARG arguments as key -> value (`k=v k2="v 2"`, or the legacy `ENV k v`)."""
        if self.keyword in {"ENV", "LABEL"} and "=" not in self.rest.split(None, 1)[0]:
            key, _, value = self.rest.partition(" ")
            return {key: value.strip()}
        result: dict[str, str] = {}
        for token in _split_words(self.rest):
            key, sep, value = token.partition("=")
            result[key] = value if sep else ""
        return result


@dataclass
class Stage:
    index: int
    base: str  # as written
    resolved_base: str  # global ARGs substituted
    name: str | None
    from_instruction: Instruction
    instructions: list[Instruction]  # after FROM

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    directives: dict[str, str]
    instructions: list[Instruction]
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)


def _split_words(text: str) -> list[str]:
    """Split on unquoted whitespace, dropping the quotes (enough for ENV/LABEL/ARG values)."""
    words: list[str] = []
    current: list[str] = []
    quote: str | None = None
    in_word = False
    index = 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\" and quote == '"' and index + 1 < len(text):
                current.append(text[index + 1])
                index += 1
            elif char == quote:
                quote = None
            else:
                current.append(char)
        elif char in "\"'":
            quote = char
            in_word = True
        elif char.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(char)
            in_word = True
        index += 1
    if quote:
        raise DockerfileError(f"unterminated quote in: {text}")
    if in_word:
        words.append("".join(current))
    return words


def substitute(text: str, variables: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        value = variables.get(name, "")
        if not value and match.group("default") is not None:
            return match.group("default")
        return value

    return _VARIABLE.sub(replace, text)


def _split_flags(keyword: str, arguments: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    rest = arguments
    if keyword in {"FROM", "RUN", "COPY", "ADD", "HEALTHCHECK"}:
        while rest.startswith("--"):
            word, _, remainder = rest.partition(" ")
            match = _FLAG.fullmatch(word)
            if not match:
                raise DockerfileError(f"{keyword}: cannot parse flag {word!r}")
            flags[match.group(1)] = match.group(2) or ""
            rest = remainder.lstrip()
    return flags, rest


def parse(text: str) -> Dockerfile:
    lines = text.splitlines()
    directives: dict[str, str] = {}
    position = 0
    # Parser directives: only at the very top, before any other comment, blank line or instruction.
    while position < len(lines):
        match = _DIRECTIVE.match(lines[position])
        if not match or match.group(1).lower() not in {"syntax", "escape", "check"}:
            break
        directives[match.group(1).lower()] = match.group(2)
        position += 1
    escape = directives.get("escape", "\\")
    if escape not in {"\\", "`"}:
        raise DockerfileError(f"invalid escape directive {escape!r}")

    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(lines[position:], start=position + 1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # a comment, also inside a continuation
        if not stripped:
            continue  # blank lines end nothing; inside a continuation they are skipped
        if not pending:
            start = number
        body = raw.rstrip()
        if body.endswith(escape):
            pending.append(body[: -len(escape)])
            continue
        pending.append(body)
        instructions.append(_instruction(start, " ".join(part.strip() for part in pending)))
        pending = []
    if pending:
        raise DockerfileError(f"line {start}: the file ends inside a line continuation")

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.rest.split()
            if len(words) == 1:
                base, name = words[0], None
            elif len(words) == 3 and words[1].upper() == "AS":
                base, name = words[0], words[2]
            else:
                raise DockerfileError(f"line {instruction.line}: FROM [--platform=...] image [AS name]")
            stages.append(
                Stage(
                    index=len(stages),
                    base=base,
                    resolved_base=substitute(base, global_args),
                    name=name,
                    from_instruction=instruction,
                    instructions=[],
                )
            )
        elif not stages:
            if instruction.keyword != "ARG":
                raise DockerfileError(f"line {instruction.line}: only ARG may come before the first FROM")
            global_args.update(instruction.pairs())
        else:
            stages[-1].instructions.append(instruction)
    if not stages:
        raise DockerfileError("no FROM")
    return Dockerfile(
        directives=directives, instructions=instructions, global_args=global_args, stages=stages
    )


def _instruction(line: int, text: str) -> Instruction:
    keyword, _, arguments = text.partition(" ")
    keyword = keyword.upper()
    if keyword not in INSTRUCTIONS:
        raise DockerfileError(f"line {line}: unknown instruction {keyword}")
    arguments = arguments.strip()
    if re.search(r"<<-?[\"']?[A-Za-z_]", arguments) and keyword in {"RUN", "COPY", "ADD"}:
        raise DockerfileError(f"line {line}: heredocs are not supported by this linter")
    flags, rest = _split_flags(keyword, arguments)
    return Instruction(line=line, keyword=keyword, arguments=arguments, flags=flags, rest=rest)


# --- .dockerignore ---------------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
            continue
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", index + 1)
            if end == -1:
                raise DockerfileError(f"bad character class in .dockerignore pattern {pattern!r}")
            out.append(pattern[index : end + 1])  # Go's [...] and [^...] read the same in Python
            index = end
        elif char == "\\" and index + 1 < len(pattern):
            out.append(re.escape(pattern[index + 1]))
            index += 1
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("".join(out))


@dataclass
class DockerIgnore:
    rules: list[tuple[bool, str, re.Pattern[str]]]  # (exclude?, cleaned pattern, regex)

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        rules = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclude = not line.startswith("!")
            pattern = line if exclude else line[1:].strip()
            cleaned = os.path.normpath(pattern).lstrip("/")
            if cleaned in {"", "."}:
                continue
            rules.append((exclude, cleaned, _pattern_regex(cleaned)))
        return cls(rules)

    def excluded(self, path: str) -> bool:
        """Whether a context path (relative, '/'-separated) stays out of the build context."""
        parts = os.path.normpath(path).split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        verdict = False
        for exclude, _, regex in self.rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                verdict = exclude
        return verdict
