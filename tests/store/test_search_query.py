"""What users type becomes an FTS5 query SQLite always accepts: everyday text is searched as its words,
advanced syntax keeps its meaning, and nothing ever reaches SQLite as an error."""

import sqlite3

import pytest
from nasty_queries import NASTY, fuzzed

from rlm_desktop.store.search_query import InvalidQuery, parse_query

TEXT = (
    "From: Stefan Schmidt <stefan@datenfreihafen.org>\n"
    "Docket FAA-2020-0686, reviewed by Mr. O'Brien of the U.S. office.\n"
    "The wire transfer of $50,000 to Zürich was approved; the tool is written in C++.\n"
    "Financial statements follow."
)
OTHER = "An unrelated memo about lunch, with 2020 and Brien in it but nothing else."


@pytest.fixture
def fts():
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='unicode61 remove_diacritics 2')")
    db.execute("INSERT INTO t (rowid, x) VALUES (1, ?), (2, ?)", (TEXT, OTHER))

    def matching(query: str) -> list[int]:
        expression = parse_query(query).fts
        return [r[0] for r in db.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY rowid", (expression,))]

    yield matching
    db.close()


@pytest.mark.parametrize(
    "query",
    [
        "stefan@datenfreihafen.org",
        "FAA-2020-0686",
        "O'Brien",
        "$50,000",
        "U.S.",
        "C++",
        "Zurich",
        "zürich",
        "<stefan@datenfreihafen.org>",
        "faa-2020-0686,",
        "mr. o'brien",
    ],
)
def test_everyday_queries_that_used_to_fail_find_their_text(fts, query):
    assert fts(query) == [1]


@pytest.mark.parametrize(
    "query, expected",
    [
        ('"wire transfer" AND zurich', [1]),
        ('"transfer wire"', []),  # a phrase keeps its order
        ("lunch OR statements", [1, 2]),
        ("brien NOT docket", [2]),
        ("2020 AND (lunch OR zurich)", [1, 2]),
        ("(memo) (lunch)", [2]),  # groups side by side: both must match
        ("NEAR(wire zurich, 5)", [1]),
        ("NEAR(wire financial, 2)", []),
        ("NEAR(wire $50,000)", [1]),  # the comma of an amount is not NEAR's distance
        ("financ*", [1]),
        ('"wire tr"*', [1]),
        ("unrelat*", [2]),
        ("wire and zurich", []),  # lower-case "and" is a word, and the text has none
    ],
)
def test_advanced_syntax_keeps_its_meaning(fts, query, expected):
    assert fts(query) == expected


@pytest.mark.parametrize(
    "query, expected",
    [
        ('"unterminated phrase', []),
        ('"wire transfer', [1]),  # an unclosed quote closes at the end
        ("(wire OR lunch", [1, 2]),  # an unclosed parenthesis too
        ("wire) zurich", [1]),  # a ")" with nothing to close is ignored
        ("AND", [2]),  # a lone operator is the word: the memo says "and"
        ("lunch AND", [2]),  # ... and so is a trailing one: "lunch" and "and"
        ("zurich AND", []),
        ("OR lunch", []),  # "or" and "lunch": the memo has no "or"
        ("NOT", []),
        ("wire AND AND zurich", []),
        ("a:b", []),  # no column filters: the colon separates words
        ("x\x00y", []),
        ("text:zurich", []),
    ],
)
def test_broken_syntax_is_read_as_words(fts, query, expected):
    assert fts(query) == expected


@pytest.mark.parametrize(
    "query, message",
    [
        ("", "empty"),
        ("   \t\n", "empty"),
        ("()", "nothing to search for"),
        ('""', "nothing to search for"),
        ("$ ++ -- !!", "nothing to search for"),
        ("NEAR(a b, x)", "must be a whole number, not 'x'"),
        ("NEAR(a b,)", "must be a whole number"),
        ("NEAR((a b) c)", "not groups in parentheses"),
    ],
)
def test_what_cannot_be_searched_says_why_in_words(query, message):
    with pytest.raises(InvalidQuery, match=message) as caught:
        parse_query(query)
    text = str(caught.value)
    assert "fts5" not in text.lower() and "sqlite" not in text.lower() and "column" not in text


def test_terms_for_snippets_are_the_words_searched():
    parsed = parse_query('stefan@datenfreihafen.org AND "wire transfer" financ* NOT (x OR y)')
    assert parsed.terms == (
        ("stefan", False),
        ("datenfreihafen", False),
        ("org", False),
        ("wire", False),
        ("transfer", False),
        ("financ", True),
        ("x", False),
        ("y", False),
    )


@pytest.mark.parametrize("query", NASTY)
def test_nasty_input_never_reaches_sqlite_as_an_error(fts, query):
    try:
        fts(query)
    except InvalidQuery as exc:
        assert str(exc)  # a reason, in words


def test_random_input_never_reaches_sqlite_as_an_error(fts):
    refused = 0
    for query in fuzzed(5000):
        try:
            fts(query)  # sqlite3.OperationalError here fails the test
        except InvalidQuery:
            refused += 1
    assert refused < 1000  # most random input is still searched, as words
