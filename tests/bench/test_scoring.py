"""The scorers: exact as a whole phrase, regex, OOLONG's 0.75^error for numbers, F1 for sets of items."""

from __future__ import annotations

import pytest

from rlm_desktop.bench.scoring import score, score_number, score_set

PEOPLE = ["Ann Lee", "Bob Roy", "Cy Park", "Dee Moss", "Ed Moss"]


def test_exact_is_a_whole_phrase_ignoring_case_markers_and_punctuation():
    assert score("exact", "The code is QX-4821-J [1].", "qx-4821-j") == 1.0
    assert score("exact", "Contract CN-123456 [2]", "CN-12345") == 0.0  # a longer number is another number
    assert score("exact", "12 June", ["June 12", "12 June"]) == 1.0
    assert score("exact", "anything", "") == 0.0


def test_regex_searches_case_insensitively():
    assert score("regex", "It is in GENEVA.", r"geneva|zurich") == 1.0
    assert score("regex", "It is in Bern.", r"geneva|zurich") == 0.0


def test_number_skips_numbers_from_the_question_and_gives_partial_credit():
    question = "How many invoices above $30,000?"
    assert score_number("Above $30,000 there are 7 invoices [1].", "7", question) == 1.0
    assert score_number("There are 9.", "7", question) == pytest.approx(0.75**2)
    assert score_number("No idea.", "7", question) == 0.0
    assert score_number("1,204 of them", "1204") == 1.0
    with pytest.raises(ValueError, match="is not a number"):
        score_number("3", "three")


def test_set_f1_is_order_free_and_counts_wrong_pairs_of_real_people():
    expected = ["Ann Lee & Bob Roy", "Cy Park & Dee Moss"]
    assert score_set("Bob Roy & Ann Lee\nDee Moss and Cy Park", expected, PEOPLE) == 1.0
    # one right, one wrong pair of real people: precision 1/2, recall 1/2
    assert score_set("Ann Lee & Bob Roy; Cy Park & Ed Moss", expected, PEOPLE) == 0.5
    # prose around the list costs nothing; a missing pair costs recall
    assert score_set("Here are the pairs I found:\n- Ann Lee & Bob Roy [1]", expected, PEOPLE) == pytest.approx(2 / 3)
    assert score_set("None of them.", expected, PEOPLE) == 0.0


def test_unknown_scoring_is_named():
    with pytest.raises(ValueError, match="unknown scoring 'fuzzy'"):
        score("fuzzy", "a", "a")
