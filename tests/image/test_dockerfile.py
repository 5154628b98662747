"""Lint the Dockerfile and .dockerignore by parsing them (no Docker, no hadolint here).

The rules: base images pinned to a full version tag (never `latest`, never untagged), two named stages
from the same base, the build stage's only step being scripts/image-install.sh (the path
test_install_script.py runs) and the final stage installing nothing, a numeric non-root USER last,
no ADD from URLs, COPY --from only from named earlier stages, ENTRYPOINT/CMD in exec form, no secret-
looking ENV/ARG names, OCI labels matching pyproject.toml, the liveness port exposed, and a build context
holding exactly what the build stage copies.
"""

from __future__ import annotations

import os
import pathlib
import re
import tomllib
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from tests.image.dockerfile import Dockerfile, DockerfileError, DockerIgnore, parse
from tests.image.helpers import ROOT, UID, build_stage, image_prefix

FULL_VERSION_TAG = re.compile(r"^\d+\.\d+\.\d+(?:[-.][A-Za-z0-9.-]+)?$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|PRIVATE_?KEY", re.IGNORECASE)
INSTALLS = re.compile(
    r"\b(?:apt-get|apt|aptitude|yum|dnf|microdnf)\b[^;&|]*\binstall\b"
    r"|\bapk\s+add\b|\bpip3?(?:\.\d+)?\s+install\b|-m\s+pip\s+install\b|\bconda\s+install\b"
    r"|\b(?:gcc|g\+\+|clang|make|build-essential|curl|wget)\b"
)
OCI = "org.opencontainers.image."


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def split_image(reference: str) -> tuple[str, str | None, str | None]:
    """name, tag, digest of an image reference (a registry port is not a tag)."""
    name, _, digest = reference.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    if tag is not None:
        name = name[: -len(tag) - 1]
    return name, tag, digest or None


# --- the parser itself --------------------------------------------------------------------------------


def test_parser_joins_continuations_skips_comments_and_reads_forms() -> None:
    parsed = parse(
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=python:3.11.14-slim-bookworm\n"
        "FROM --platform=$BUILDPLATFORM ${BASE} AS build\n"
        "RUN echo one \\\n"
        "  # a comment inside the continuation\n"
        "\n"
        "    two\n"
        "FROM ${BASE:-other}\n"
        'ENV A=1 B="two words" \\\n'
        "    C=3\n"
        "ENV LEGACY value with spaces\n"
        'CMD ["run", "--x"]\n'
        "ENTRYPOINT apitoken-operator\n"
        "COPY --from=build --chown=1:1 /a /b\n"
    )
    assert parsed.directives == {"syntax": "docker/dockerfile:1"}
    assert parsed.global_args == {"BASE": "python:3.11.14-slim-bookworm"}
    build, final = parsed.stages
    assert (build.name, build.resolved_base, build.from_instruction.flags) == (
        "build",
        "python:3.11.14-slim-bookworm",
        {"platform": "$BUILDPLATFORM"},
    )
    (run,) = build.all("RUN")
    assert (run.line, run.rest, run.exec_form) == (4, "echo one two", None)
    assert final.name is None and final.resolved_base == "python:3.11.14-slim-bookworm"
    first, legacy = final.all("ENV")
    assert first.pairs() == {"A": "1", "B": "two words", "C": "3"}
    assert legacy.pairs() == {"LEGACY": "value with spaces"}
    assert final.all("CMD")[0].exec_form == ["run", "--x"]
    assert final.all("ENTRYPOINT")[0].exec_form is None
    assert final.all("COPY")[0].flags == {"from": "build", "chown": "1:1"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM a:1.2.3\nRUN echo \\\n", "continuation"),
        ("FROM a:1.2.3\nFETCH x\n", "unknown instruction"),
        ("RUN true\nFROM a:1.2.3\n", "only ARG"),
        ("FROM a:1.2.3\nRUN <<EOF\necho\nEOF\n", "heredocs"),
        ("ARG X=1\n", "no FROM"),
    ],
)
def test_parser_refuses(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse(text)


def test_dockerignore_matching() -> None:
    ignore = DockerIgnore.parse("*\n!keep/\n**/__pycache__\n!keep/__pycache__/special.pyc\n/.git\n")
    assert ignore.excluded("anything")
    assert ignore.excluded("dir/file")
    assert not ignore.excluded("keep/a.py")
    assert ignore.excluded("keep/sub/__pycache__/a.pyc")
    assert not ignore.excluded("keep/__pycache__/special.pyc")
    assert ignore.excluded(".git/HEAD")


def test_image_reference_splitting() -> None:
    assert split_image("python:3.11.14-slim-bookworm") == ("python", "3.11.14-slim-bookworm", None)
    assert split_image("registry:5000/team/python") == ("registry:5000/team/python", None, None)
    assert split_image("python:3.11@sha256:" + "a" * 64) == ("python", "3.11", "sha256:" + "a" * 64)


# --- the rules ----------------------------------------------------------------------------------------


def test_base_images_pinned_to_a_full_version(dockerfile: Dockerfile) -> None:
    stage_names = {stage.name for stage in dockerfile.stages}
    for stage in dockerfile.stages:
        if stage.resolved_base in stage_names:
            continue
        _, tag, digest = split_image(stage.resolved_base)
        where = f"line {stage.from_instruction.line}: FROM {stage.resolved_base}"
        assert tag is not None, f"{where}: untagged"
        assert tag != "latest", f"{where}: latest"
        assert FULL_VERSION_TAG.match(tag), f"{where}: the tag must name a full version, like 3.11.14-slim"
        assert digest is None or DIGEST.match(digest), f"{where}: bad digest"


def test_two_named_stages_from_the_same_slim_base(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2
    assert all(stage.name for stage in dockerfile.stages), "name every stage (FROM ... AS name)"
    build = build_stage(dockerfile)
    assert build is not dockerfile.final
    # the venv's bin/python links to the base's interpreter, so both stages must share it
    assert build.resolved_base == dockerfile.final.resolved_base
    name, tag, _ = split_image(dockerfile.final.resolved_base)
    assert name in {"python", "docker.io/library/python"} and tag and tag.endswith("-slim-bookworm")


def test_build_stage_runs_only_the_tested_install_script(dockerfile: Dockerfile) -> None:
    build = build_stage(dockerfile)
    runs = build.all("RUN")
    assert len(runs) == 1, "the build stage's only RUN is scripts/image-install.sh, the tested path"
    assert runs[0].exec_form == ["bash", "scripts/image-install.sh", image_prefix(dockerfile)]
    prefix = image_prefix(dockerfile)
    copies = [i for i in dockerfile.final.all("COPY") if "from" in i.flags]
    assert [c.rest.split() for c in copies] == [[prefix, prefix]], "copy only the venv, to the same path"


def test_build_stage_copies_what_the_script_reads(dockerfile: Dockerfile) -> None:
    script = (ROOT / "scripts" / "image-install.sh").read_text()
    build = build_stage(dockerfile)
    copied = set()
    for copy in build.all("COPY"):
        *sources, _ = copy.rest.split()
        copied |= {source.rstrip("/") for source in sources}
    assert copied == {
        "pyproject.toml",
        "README.md",
        "constraints.txt",
        "operator/apitoken_operator",
        "scripts/image-install.sh",
    }
    for source in copied - {"scripts/image-install.sh"}:
        assert f"$source_root/{source}" in script, f"the script no longer reads {source}"


def test_final_stage_installs_and_adds_nothing(dockerfile: Dockerfile) -> None:
    for instruction in dockerfile.final.instructions:
        assert instruction.keyword != "ADD", f"line {instruction.line}: ADD in the final stage"
        if instruction.keyword == "RUN":
            found = INSTALLS.search(instruction.rest)
            assert not found, f"line {instruction.line}: {found.group(0)!r} in the final stage"


def test_numeric_non_root_user_last(dockerfile: Dockerfile) -> None:
    final = dockerfile.final.instructions
    users = [i for i in final if i.keyword == "USER"]
    assert users, "the final stage sets no USER"
    last = users[-1]
    assert last.rest == f"{UID}:{UID}", "USER 65532:65532 (numeric, so runAsNonRoot can verify it)"
    uid, _, gid = last.rest.partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) != 0 and int(gid) != 0
    after = [i.keyword for i in final[final.index(last) + 1 :]]
    assert "RUN" not in after and "USER" not in after, "nothing may run as another user after USER"


def test_no_add_from_urls(dockerfile: Dockerfile) -> None:
    for instruction in dockerfile.instructions:
        if instruction.keyword == "ADD":
            assert not re.search(r"(?:https?|ftp|git)://|git@", instruction.rest), f"line {instruction.line}"


def test_copy_from_only_named_earlier_stages(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        earlier = {s.name for s in dockerfile.stages[: stage.index]}
        for copy in stage.all("COPY"):
            source = copy.flags.get("from")
            if source is not None:
                assert source in earlier, f"line {copy.line}: --from={source} is not an earlier named stage"


def test_entrypoint_and_cmd_in_exec_form(dockerfile: Dockerfile) -> None:
    (entrypoint,) = dockerfile.final.all("ENTRYPOINT")
    (command,) = dockerfile.final.all("CMD")
    assert entrypoint.exec_form == ["apitoken-operator"], "ENTRYPOINT in JSON form, so signals reach it"
    assert command.exec_form is not None and command.exec_form[0] == "run"
    for instruction in dockerfile.instructions:
        if instruction.keyword in {"ENTRYPOINT", "CMD"}:
            assert instruction.exec_form is not None, f"line {instruction.line}: use the JSON form"


def test_no_secret_names_in_env_or_arg(dockerfile: Dockerfile) -> None:
    names = set(dockerfile.global_args)
    for instruction in dockerfile.instructions:
        if instruction.keyword in {"ENV", "ARG"}:
            names |= set(instruction.pairs())
    assert names, "no ENV or ARG found: the parser is broken"
    suspicious = sorted(name for name in names if SECRET_NAME.search(name))
    assert not suspicious, f"secrets do not belong in image ENV/ARG: {suspicious}"


def test_runtime_environment(dockerfile: Dockerfile) -> None:
    env: dict[str, str] = {}
    for instruction in dockerfile.final.all("ENV"):
        env.update(instruction.pairs())
    prefix = image_prefix(dockerfile)
    assert env["PATH"].startswith(f"{prefix}/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == "/tmp"
    assert env.get("LOGNAME"), "kopf's getpass.getuser() needs it for a UID without a passwd entry"


def test_liveness_port_exposed_and_no_healthcheck(dockerfile: Dockerfile) -> None:
    command = dockerfile.final.all("CMD")[-1].exec_form
    assert command is not None
    liveness = urlsplit(command[command.index("--liveness") + 1])
    assert liveness.hostname == "0.0.0.0", "listen on all interfaces, so the kubelet reaches it"
    exposed = {word.split("/")[0] for i in dockerfile.final.all("EXPOSE") for word in i.rest.split()}
    assert str(liveness.port) in exposed
    assert "9090" in exposed  # docs/metrics.md: --metrics-port 9090
    assert not dockerfile.final.all("HEALTHCHECK"), "Kubernetes ignores it; the pod spec probes /healthz"


def test_oci_labels_match_pyproject(dockerfile: Dockerfile) -> None:
    labels: dict[str, str] = {}
    for instruction in dockerfile.final.all("LABEL"):
        labels.update(instruction.pairs())
    project = pyproject()["project"]
    assert labels[OCI + "title"] == project["name"]
    assert labels[OCI + "description"] == project["description"]
    assert labels[OCI + "version"] == project["version"]
    license_ = project["license"]
    assert labels[OCI + "licenses"] == (license_ if isinstance(license_, str) else license_["text"])
    assert labels[OCI + "base.name"] == "${PYTHON_IMAGE}"


def test_docs_name_the_pinned_base(dockerfile: Dockerfile) -> None:
    _, tag, _ = split_image(dockerfile.final.resolved_base)
    assert f"python:{tag}" in (ROOT / "docs" / "image.md").read_text()


def test_build_context_is_exactly_what_the_build_copies(dockerfile: Dockerfile) -> None:
    ignore = DockerIgnore.parse((ROOT / ".dockerignore").read_text())
    for path in [
        ".venv/bin/python",
        ".git/HEAD",
        ".pytest_cache/v/cache/lastfailed",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/x",
        ".hypothesis/examples/x",
        "operator/apitoken_operator/__pycache__/cli.cpython-311.pyc",
        "operator/dynatrace_apitoken_operator.egg-info/PKG-INFO",
        "tests/conftest.py",
        "docs/image.md",
        "Dockerfile",
    ]:
        assert ignore.excluded(path), f"{path} would be sent to the builder"
    copied = set()
    for copy in build_stage(dockerfile).all("COPY"):
        *sources, _ = copy.rest.split()
        copied |= {source.rstrip("/") for source in sources}
    context = set()
    for directory, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in {".git", ".venv"}]
        for name in filenames:
            relative = pathlib.Path(directory, name).relative_to(ROOT).as_posix()
            if not ignore.excluded(relative):
                context.add(relative)
    outside = sorted(p for p in context if not any(p == c or p.startswith(c + "/") for c in copied))
    assert not outside, f"in the build context but never copied: {outside[:10]}"
    for source in copied:
        present = any(p == source or p.startswith(source + "/") for p in context)
        assert present, f"{source} is not in the build context"


def test_hadolint_style_basics(dockerfile: Dockerfile) -> None:
    """DL3000 absolute WORKDIR, DL3004 no sudo, DL4006 pipefail before a piped shell-form RUN."""
    for stage in dockerfile.stages:
        pipefail = False
        for instruction in stage.instructions:
            where = f"line {instruction.line}"
            if instruction.keyword == "WORKDIR":
                assert instruction.rest.startswith(("/", "$")), f"{where}: WORKDIR must be absolute"
            if instruction.keyword == "SHELL":
                pipefail = "pipefail" in (instruction.exec_form or [])
            if instruction.keyword == "RUN" and instruction.exec_form is None:
                assert not re.search(r"\bsudo\b", instruction.rest), f"{where}: sudo"
                if re.search(r"(?<!\|)\|(?!\|)", instruction.rest):
                    assert pipefail, f'{where}: a pipe needs SHELL ["/bin/bash", "-o", "pipefail", "-c"]'


_ORIGINAL = (ROOT / "Dockerfile").read_text()


@pytest.mark.parametrize(
    ("rule", "old", "new"),
    [
        (
            test_base_images_pinned_to_a_full_version,
            "ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm",
            "ARG PYTHON_IMAGE=python:latest",
        ),
        (
            test_base_images_pinned_to_a_full_version,
            "ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm",
            "ARG PYTHON_IMAGE=python:3.11-slim",
        ),
        (
            test_base_images_pinned_to_a_full_version,
            "ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm",
            "ARG PYTHON_IMAGE=python",
        ),
        (
            test_two_named_stages_from_the_same_slim_base,
            "FROM ${PYTHON_IMAGE} AS runtime",
            "FROM python:3.11.14",
        ),
        (
            test_build_stage_runs_only_the_tested_install_script,
            '"/opt/venv"]',
            '"/opt/venv"]\nRUN pip install x',
        ),
        (test_build_stage_runs_only_the_tested_install_script, "/opt/venv /opt/venv", "/opt/venv /venv"),
        (
            test_final_stage_installs_and_adds_nothing,
            "USER 65532",
            "RUN apt-get update && apt-get install -y gcc\nUSER 65532",
        ),
        (
            test_final_stage_installs_and_adds_nothing,
            "USER 65532",
            "RUN python3 -m pip install debugpy\nUSER 65532",
        ),
        (test_numeric_non_root_user_last, "USER 65532:65532", "USER apitoken"),
        (test_numeric_non_root_user_last, "USER 65532:65532", "USER 65532:65532\nUSER 0"),
        (test_numeric_non_root_user_last, "EXPOSE 8080", "RUN true\nEXPOSE 8080"),
        (test_no_add_from_urls, "USER 65532", "ADD https://example.com/x /x\nUSER 65532"),
        (test_copy_from_only_named_earlier_stages, "--from=build", "--from=0"),
        (test_copy_from_only_named_earlier_stages, "--from=build", "--from=busybox:1.37.0"),
        (
            test_entrypoint_and_cmd_in_exec_form,
            'ENTRYPOINT ["apitoken-operator"]',
            "ENTRYPOINT apitoken-operator",
        ),
        (test_no_secret_names_in_env_or_arg, "HOME=/tmp", "HOME=/tmp DT_API_TOKEN=x"),
        (test_no_secret_names_in_env_or_arg, "ARG PYTHON_IMAGE\n", "ARG PYTHON_IMAGE\nARG DB_PASSWORD\n"),
        (test_runtime_environment, "PYTHONDONTWRITEBYTECODE=1", "PYTHONDONTWRITEBYTECODE=0"),
        (test_liveness_port_exposed_and_no_healthcheck, "EXPOSE 8080 9090", "EXPOSE 9090"),
        (test_oci_labels_match_pyproject, 'version="0.1.0"', 'version="9.9.9"'),
        (test_hadolint_style_basics, "WORKDIR /src", "WORKDIR src"),
        (test_hadolint_style_basics, "USER 65532", "RUN ls / | wc -l\nUSER 65532"),
    ],
)
def test_the_rules_catch_violations(rule: Callable[[Dockerfile], None], old: str, new: str) -> None:
    """Each rule, given the Dockerfile with one violation, fails: the rules are not vacuous."""
    assert old in _ORIGINAL
    mutated = parse(_ORIGINAL.replace(old, new, 1))
    with pytest.raises((AssertionError, KeyError, ValueError)):
        rule(mutated)
