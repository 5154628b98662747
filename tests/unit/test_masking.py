"""Token secrets never reach a log line, and the session's leak scan really finds one that does.

Every full token here is made at run time. Records that could carry an unmasked token are kept away from
the root logger (propagate off), so the session-wide leak scan of tests/fixtures/leaks.py stays clean.
"""

from __future__ import annotations

import logging
import pathlib
import pickle
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apitoken_operator.dynatrace import secrets as secrets_module
from apitoken_operator.dynatrace.models import ApiTokenCreated
from apitoken_operator.dynatrace.secrets import (
    MASK,
    SecretMaskingFilter,
    TokenSecret,
    contains_secret,
    install_log_masking,
    mask_secrets,
)
from tests.fixtures.leaks import LeakSources, _Recorder
from tests.unit.builders import full_token, secret_part, secret_parts, tid, token_ids

ID = tid(42)


def leaked(text: str, secret: str) -> bool:
    """Whether the secret part is in the text (a bool, so a failing assert does not print the secret)."""
    return secret in text


class Lines(logging.Handler):
    """A handler of its own, formatting like a real one (message, then any exception and stack)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def isolated_logger() -> Iterator[tuple[logging.Logger, Lines]]:
    """A fresh child logger with its own handler; nothing it logs reaches the root logger."""
    parent = logging.getLogger(f"unit.masking.{uuid.uuid4().hex}")
    parent.propagate = False
    logger = parent.getChild("child")
    logger.setLevel(logging.DEBUG)
    handler = Lines()
    logger.addHandler(handler)
    yield logger, handler
    logger.removeHandler(handler)


@pytest.fixture
def masking(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """install_log_masking() for one test; the process-wide record factory is put back afterwards."""
    previous = logging.getLogRecordFactory()
    monkeypatch.setattr(secrets_module, "_installed", False)
    install_log_masking()
    yield
    logging.setLogRecordFactory(previous)


@pytest.fixture
def no_masking() -> Iterator[None]:
    """The plain record factory, whatever else the session installed."""
    previous = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    yield
    logging.setLogRecordFactory(previous)


# --- install_log_masking: every logger, every way a token can get into a record ------------------------


@pytest.mark.usefixtures("masking")
def test_a_child_logger_with_its_own_handler_is_masked(isolated_logger: tuple[logging.Logger, Lines]) -> None:
    logger, handler = isolated_logger
    token = full_token(ID)
    logger.warning("token %s in args", token)
    logger.info("token %(value)s in a mapping", {"value": token})
    logger.debug(f"token {token} in the message itself")
    logger.error("two tokens: %s %s", token, full_token(tid(43)))
    assert len(handler.lines) == 4
    assert not leaked(handler.text, token.split(".")[2])
    assert handler.text.count(f"{ID}.{MASK}") == 4  # the id stays, so logs remain useful


@pytest.mark.usefixtures("masking")
def test_an_exception_carrying_a_token_is_masked(isolated_logger: tuple[logging.Logger, Lines]) -> None:
    logger, handler = isolated_logger
    token = full_token(ID)
    try:
        try:
            raise KeyError(token)
        except KeyError as cause:
            raise RuntimeError(f"request failed for {token}") from cause
    except RuntimeError as error:
        logger.exception("call failed")
        logger.error("call failed: %s", error)
        logger.warning("call failed: %r", error, exc_info=True)
    assert "Traceback" in handler.text and "RuntimeError" in handler.text and "KeyError" in handler.text
    assert not leaked(handler.text, token.split(".")[2])


@pytest.mark.usefixtures("masking")
def test_a_token_in_stack_info_and_broken_format_strings_is_masked(
    isolated_logger: tuple[logging.Logger, Lines],
) -> None:
    logger, handler = isolated_logger
    token = full_token(ID)
    logger.warning(f"{token} %s %s", "only one argument")  # getMessage() fails: the message is kept raw
    logger.warning("stack %s", token, stack_info=True)
    assert len(handler.lines) == 2
    assert not leaked(handler.text, token.split(".")[2])


@pytest.mark.usefixtures("masking")
def test_records_reaching_the_root_logger_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    token = full_token(ID)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger(f"unit.masking.propagating.{uuid.uuid4().hex}").info("token %s", token)
    assert caplog.records
    assert not leaked(caplog.text, token.split(".")[2])
    assert f"{ID}.{MASK}" in caplog.text


@pytest.mark.usefixtures("masking")
def test_installing_twice_wraps_once() -> None:
    factory = logging.getLogRecordFactory()
    install_log_masking()
    assert logging.getLogRecordFactory() is factory


# --- SecretMaskingFilter --------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_masking")
def test_the_filter_on_a_handler_masks_message_arguments_and_exception(
    isolated_logger: tuple[logging.Logger, Lines],
) -> None:
    logger, handler = isolated_logger
    handler.addFilter(SecretMaskingFilter())
    token = full_token(ID)
    try:
        raise ValueError(f"bad token {token}")
    except ValueError:
        logger.exception("token %s", token)
    assert len(handler.lines) == 1
    assert not leaked(handler.text, token.split(".")[2])
    assert f"{ID}.{MASK}" in handler.text


@pytest.mark.usefixtures("no_masking")
def test_the_filter_masks_a_record_once() -> None:
    token = full_token(ID)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token %s", (token,), None)
    masking = SecretMaskingFilter()
    assert masking.filter(record) is True
    assert record.getMessage() == f"token {ID}.{MASK}"
    assert record.args is None
    assert masking.filter(record) is True
    assert record.getMessage() == f"token {ID}.{MASK}"


# --- mask_secrets ---------------------------------------------------------------------------------------

separators = st.sampled_from([" ", "\n", "=", ":", '"', "'", "(", ",", "/", "\t"])
plain_text = st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=30)


@settings(max_examples=200)
@given(token_ids, secret_parts, st.tuples(plain_text, separators, separators, plain_text))
def test_mask_secrets_hides_every_secret_and_keeps_the_id(
    token_id: str, secret: str, around: tuple[str, str, str, str]
) -> None:
    before, left, right, after = around
    text = f"{before}{left}{token_id}.{secret}{right}{after}"
    masked = mask_secrets(text)
    assert not leaked(masked, secret)
    assert f"{token_id}.{MASK}" in masked
    assert contains_secret(text) and not contains_secret(masked)
    assert mask_secrets(masked) == masked


@settings(max_examples=100)
@given(st.text(max_size=80))
def test_mask_secrets_leaves_other_text_alone(text: str) -> None:
    if not contains_secret(text):
        assert mask_secrets(text) == text


def test_mask_secrets_leaves_ids_alone() -> None:
    assert mask_secrets(f"token {ID} deleted") == f"token {ID} deleted"


@pytest.mark.parametrize(
    "glue",
    [("Api-Token", ""), ("token_", ""), ("", "_old"), ("0", ""), ("", "x")],
    ids=["header-without-space", "underscore-before", "underscore-after", "digit-before", "letter-after"],
)
def test_mask_secrets_hides_a_token_glued_to_other_text(glue: tuple[str, str]) -> None:
    """A token written right against a word character is still a token: its secret must not survive."""
    secret = secret_part()
    masked = mask_secrets(f"{glue[0]}{ID}.{secret}{glue[1]}")
    assert not leaked(masked, secret)


# --- TokenSecret ----------------------------------------------------------------------------------------


def test_token_secret_shows_only_its_id() -> None:
    token = full_token(ID)
    secret = token.split(".")[2]
    wrapped = TokenSecret(f"  {token}\n")
    assert wrapped.reveal() == token  # surrounding whitespace is dropped
    assert wrapped.token_id == ID
    shown = " ".join([str(wrapped), repr(wrapped), f"{wrapped}", "%s" % wrapped, repr([wrapped])])  # noqa: UP031
    assert not leaked(shown, secret)
    assert str(wrapped) == f"{ID}.{MASK}"
    created = ApiTokenCreated.model_validate({"id": ID, "token": token})
    dumped = " ".join([repr(created), str(created), created.model_dump_json(), str(created.wire())])
    assert not leaked(dumped, secret)
    assert created.token is not None and created.token.reveal() == token


def test_token_secret_cannot_be_pickled() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(TokenSecret(full_token(ID)))


def test_token_secret_equality() -> None:
    token = full_token(ID)
    assert TokenSecret(token) == TokenSecret(f" {token} ")
    assert hash(TokenSecret(token)) == hash(TokenSecret(token))
    assert TokenSecret(token) != TokenSecret(full_token(ID))
    assert TokenSecret(token) != token


@pytest.mark.parametrize("value", ["", "hello", ID, "a.b.c", f"dt0c01.{'a' * 24}.X"])
def test_token_secret_placeholder_for_what_is_not_a_token(value: str) -> None:
    assert TokenSecret(value).token_id == "<unrecognised token>"
    assert str(TokenSecret(value)) == f"<unrecognised token>.{MASK}"


@pytest.mark.parametrize(
    "secret_of",
    [lambda: "", lambda: "x", lambda: secret_part()[:63], lambda: secret_part().lower()],
    ids=["empty", "one-char", "63-chars", "lower-case"],
)
def test_token_secret_id_only_for_the_documented_format(secret_of: Callable[[], str]) -> None:
    """`token_id` promises a placeholder 'when the value is not in the documented format' (prefix.24.64)."""
    assert TokenSecret(f"{ID}.{secret_of()}").token_id == "<unrecognised token>"


# --- the session's leak scan can fail -------------------------------------------------------------------


def test_leak_scan_finds_a_token_in_a_log_line() -> None:
    token = full_token(ID)
    findings = LeakSources().findings(["ok", f"created {token}", mask_secrets(f"created {token}")])
    assert len(findings) == 1
    assert findings[0].startswith("log: created dt0c01.")


def test_leak_scan_finds_a_token_in_files_and_texts(tmp_path: pathlib.Path) -> None:
    sources = LeakSources()
    log = tmp_path / "operator.log"
    log.write_text(f"start\nready\nhandling {full_token(ID)}\n")
    clean = tmp_path / "clean.log"
    clean.write_text(f"handling {ID}.{MASK}\n")
    sources.add_file(log)
    sources.add_file(clean)
    sources.add_file(tmp_path / "never-written.log")
    sources.add_text("events", f"Created token {full_token(ID)}")
    sources.add_text("status", f"id: {ID}")
    assert sources.findings([]) == [f"{log}:3", "events"]


@pytest.mark.usefixtures("no_masking")
def test_leak_scan_sees_what_a_logger_really_emitted(isolated_logger: tuple[logging.Logger, Lines]) -> None:
    """The session's recorder formats %-args, so an unmasked token logged anywhere is found."""
    logger, _ = isolated_logger
    recorder = _Recorder()
    logger.addHandler(recorder)
    try:
        logger.debug("created %s", full_token(ID))
        logger.info("created %s", TokenSecret(full_token(ID)))  # the safe way
    finally:
        logger.removeHandler(recorder)
    findings = LeakSources().findings(recorder.lines)
    assert len(findings) == 1 and "created dt0c01." in findings[0]


def test_leak_scan_finds_a_token_glued_to_other_text() -> None:
    assert LeakSources().findings([f"Api-Token{full_token(ID)}"]) != []
