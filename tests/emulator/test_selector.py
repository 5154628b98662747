"""The apiTokenSelector grammar: render, parse, matching, and the render→parse round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.dynatrace.selector import Selector, SelectorSyntaxError, parse


@pytest.mark.parametrize(
    ("selector", "text"),
    [
        (Selector(), ""),
        (Selector(owner="a"), 'owner("a")'),
        (Selector(personal_access_token=False), "personalAccessToken(false)"),
        (
            Selector(owner="a", personal_access_token=True, scopes=("x", "y")),
            'owner("a"),personalAccessToken(true),scope("x","y")',
        ),
        (Selector(owner='say "hi", \\o/'), r'owner("say \"hi\", \\o/")'),
    ],
)
def test_render(selector: Selector, text: str) -> None:
    assert selector.render() == text
    assert parse(text) == selector


def test_parse_allows_whitespace_and_any_order() -> None:
    assert parse(' scope( "b" , "c" ) , owner ( "x" ) ') == Selector(owner="x", scopes=("b", "c"))


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("owner(a)", 6),  # unquoted
        ('owner("a"', 9),  # unclosed parenthesis
        ('owner("a)', 9),  # unclosed quote
        ("personalAccessToken(yes)", 20),
        ("scope()", 6),
        ('user("a")', 0),
        ('owner("a"),owner("b")', 11),
        ('owner("a");scope("x")', 10),
        (r'owner("a\n")', 9),  # only \" and \\ are escapes
        ('owner("a"),', 11),
    ],
)
def test_parse_errors_name_the_position(text: str, position: int) -> None:
    with pytest.raises(SelectorSyntaxError) as caught:
        parse(text)
    assert caught.value.position == position
    assert isinstance(caught.value, ValueError)
    assert f"position {position}" in str(caught.value)


def test_matches_all_criteria_and_any_scope() -> None:
    token = ApiToken(owner="alice", personal_access_token=False, scopes=["metrics.read", "logs.read"])
    assert Selector().matches(token)
    assert Selector(owner="alice", scopes=("nope", "logs.read")).matches(token)
    assert Selector(owner="alice", personal_access_token=False).matches(token)
    assert not Selector(owner="Alice").matches(token)  # case-sensitive
    assert not Selector(owner="alice", personal_access_token=True).matches(token)
    assert not Selector(scopes=("entities.read",)).matches(token)


def test_unknown_fields_never_match_a_criterion_on_them() -> None:
    unknown = ApiToken()
    assert Selector().matches(unknown)
    assert not Selector(owner="a").matches(unknown)
    assert not Selector(personal_access_token=False).matches(unknown)
    assert not Selector(scopes=("x",)).matches(unknown)


selectors = st.builds(
    Selector,
    owner=st.none() | st.text(),
    personal_access_token=st.none() | st.booleans(),
    scopes=st.lists(st.text(), max_size=5).map(tuple),
)


@given(selectors)
def test_render_parse_round_trip(selector: Selector) -> None:
    assert parse(selector.render()) == selector


@given(st.text(alphabet='owner()"\\,scope personalAccessTokentruefalse', max_size=40))
def test_parse_either_succeeds_or_raises_the_documented_error(text: str) -> None:
    try:
        selector = parse(text)
    except SelectorSyntaxError:
        return
    assert parse(selector.render()) == selector
