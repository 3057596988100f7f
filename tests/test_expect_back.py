"""pitr-restore's `expect_back`: what a restore to just before a destructive event must
bring back, written from the event and read back exactly, whatever the names hold; a
mistake in it is refused in words before any restore starts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tui.errors import InvalidInput
from tui.pitr.expect_back import Expectation
from tui.runbook.model import Param
from tui.runbook.params import coerce

NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=1, max_size=12)


def test_an_event_is_written_as_clauses_a_person_can_read() -> None:
    expected = Expectation("shop", (("shop", "public", "orders"),), 5000)
    assert expected.text() == 'database "shop"; table "shop"."public"."orders"; rows >= 5000'
    assert Expectation.parse(expected.text()) == expected


def test_names_with_dots_quotes_spaces_and_semicolons_come_back_as_they_were() -> None:
    expected = Expectation('my.db', (('my.db', 'Sales; 2026', 'the "big" one'),), None)
    assert Expectation.parse(expected.text()) == expected


@given(NAMES, NAMES, NAMES, st.none() | st.integers(0, 10**9))
def test_any_names_survive_the_round_trip(database, schema, table, rows) -> None:
    expected = Expectation(database, ((database, schema, table),), rows)
    assert Expectation.parse(expected.text()) == expected


def test_unquoted_names_are_taken_as_written_and_clauses_may_be_spaced_freely() -> None:
    assert Expectation.parse("  table shop.public.Orders ;rows>=12;database shop ") == \
        Expectation("shop", (("shop", "public", "Orders"),), 12)


@pytest.mark.parametrize(("text", "said"), [
    ('table "shop"."orders"', "is not `database NAME`"),
    ("rows >= 5", "needs the tables that hold them"),
    ('table "a"."b"."c"; rows >= many', "'rows >= many' is not"),
    ('database "shop', "an unclosed quote"),
    ("drop everything", "'drop everything' is not"),
])
def test_a_mistake_is_refused_saying_what(text: str, said: str) -> None:
    with pytest.raises(InvalidInput, match="expect_back") as caught:
        Expectation.parse(text)
    assert said in str(caught.value)


def test_the_parameter_type_checks_it_as_the_form_does() -> None:
    param = Param(name="expect_back", type="expect_back", default="")
    assert coerce(param, "") == ""
    assert coerce(param, "database shop") == 'database "shop"'
    with pytest.raises(ValueError, match="unclosed quote"):
        coerce(param, 'database "shop')
