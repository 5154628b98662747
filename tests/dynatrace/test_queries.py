"""The list operation's query: fields, selector, continuation."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from apitoken_operator.dynatrace import queries
from apitoken_operator.dynatrace.errors import ConfigurationError
from apitoken_operator.dynatrace.models import ListField

FIELDS = {
    "additions from enum": ([ListField.SCOPES, ListField.EXPIRATION_DATE], False, "+scopes,+expirationDate"),
    "additions from strings": (["scopes", "modifiedDate"], False, "+scopes,+modifiedDate"),
    "explicit operators pass through": (["+scopes", "-owner"], False, "+scopes,-owner"),
    "unknown field passes through": (["futureField"], False, "+futureField"),
    "duplicates dropped": (["scopes", ListField.SCOPES], False, "+scopes"),
    "exact set": ([ListField.NAME, ListField.SCOPES], True, "name,scopes"),
    "all fields exactly": (list(queries.ALL_FIELDS), True, ",".join(field.value for field in ListField)),
}


@pytest.mark.parametrize(("fields", "exact", "rendered"), FIELDS.values(), ids=FIELDS.keys())
def test_render_fields(fields: list[ListField | str], exact: bool, rendered: str) -> None:
    assert queries.render_fields(fields, exact=exact) == rendered


FIELD_ERRORS = {
    "operator in exact set": (["+scopes"], True),
    "one string instead of a list": ("scopes", False),
    "comma-joined": (["scopes,owner"], False),
    "empty list": ([], False),
    "blank name": ([" "], False),
    "lone operator": (["+"], False),
}


@pytest.mark.parametrize(("fields", "exact"), FIELD_ERRORS.values(), ids=FIELD_ERRORS.keys())
def test_render_fields_refuses(fields: list[str], exact: bool) -> None:
    with pytest.raises(ConfigurationError):
        queries.render_fields(fields, exact=exact)


@dataclass(frozen=True)
class FakeSelector:
    text: str

    def render(self) -> str:
        return self.text


def test_selector_string_or_renderable() -> None:
    assert queries.render_selector('owner("a")') == 'owner("a")'
    assert queries.render_selector(FakeSelector('scope("x")')) == 'scope("x")'
    assert queries.render_selector(FakeSelector("")) is None
    assert queries.render_selector("  ") is None


def test_real_selector_class_renders() -> None:
    selector_module = pytest.importorskip("apitoken_operator.dynatrace.selector")
    selector = selector_module.Selector(owner="me@example.com", scopes=("apiTokens.read",))
    params = queries.list_params(page_size=100, selector=selector)
    assert params["apiTokenSelector"] == 'owner("me@example.com"),scope("apiTokens.read")'


def test_list_params_first_page() -> None:
    params = queries.list_params(
        page_size=250,
        fields=[ListField.SCOPES],
        selector="personalAccessToken(false)",
        sort="-name",
        used_from="now-1d",
        used_to="now",
    )
    assert params == {
        "pageSize": "250",
        "fields": "+scopes",
        "apiTokenSelector": "personalAccessToken(false)",
        "sort": "-name",
        "from": "now-1d",
        "to": "now",
    }


def test_empty_selector_is_left_out() -> None:
    assert "apiTokenSelector" not in queries.list_params(page_size=100, selector=FakeSelector(""))


def test_continuation_carries_only_the_key() -> None:
    assert queries.list_params(page_key="abc", page_size=100, fields=["scopes"], sort="name") == {
        "nextPageKey": "abc"
    }


@pytest.mark.parametrize("size", [0, 99, 10001])
def test_page_size_bounds(size: int) -> None:
    with pytest.raises(ConfigurationError, match="page size"):
        queries.list_params(page_size=size)
