"""Score an answer against the expected one: exact (as a whole phrase), regex, number (OOLONG's 0.75^error) or set F1."""

from __future__ import annotations

import re

SCORINGS = ("exact", "regex", "number", "set")
_MARKER = re.compile(r"\[\^?\w{1,12}\]")  # citation markers such as [1] or [^c3]
_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])-?\d+(?:\.\d+)?")
_SPLIT = re.compile(r"[\n;,]+")


def normalize(text: str) -> str:
    """Lower case, citation markers and punctuation gone, spaces collapsed."""
    text = _MARKER.sub(" ", text).lower()
    text = re.sub(r"[^\w$.%-]+", " ", text)
    return " ".join(w.strip(".-") for w in text.split() if w.strip(".-"))


def score_exact(answer: str, expected: str) -> float:
    """1 when the expected answer appears in the answer as a whole phrase, case and punctuation aside."""
    want = normalize(expected)
    if not want:
        return 0.0
    return 1.0 if f" {want} " in f" {normalize(answer)} " else 0.0


def score_regex(answer: str, pattern: str) -> float:
    return 1.0 if re.search(pattern, answer, re.IGNORECASE | re.MULTILINE) else 0.0


def _numbers(text: str) -> list[float]:
    return [float(m.group().replace(",", "")) for m in _NUMBER.finditer(_MARKER.sub(" ", text))]


def score_number(answer: str, expected: str, question: str = "") -> float:
    """0.75 ** |error| on the first number of the answer that is not already in the question (OOLONG's metric)."""
    try:
        want = float(str(expected).replace(",", ""))
    except ValueError:
        raise ValueError(f"expected answer {expected!r} is not a number") from None
    given = set(_numbers(question))
    for value in _numbers(answer):
        if value not in given or value == want:
            return round(0.75 ** abs(value - want), 6)
    return 0.0


def _words(text: str) -> set[str]:
    return set(normalize(text).split())


def score_set(answer: str, expected: list[str], universe: list[str] | None = None) -> float:
    """F1 between the answer's items (lines, or parts split by ';' or ',') and the expected items.

    An expected item is found when one answer item holds all its words, in any order ("Bob & Ann" finds
    "Ann & Bob"). An answer item counts as given, for precision, when it shares a word with an expected item or
    with `universe` (e.g. every person's name in the corpus), so a wrong pair of real people costs precision and
    a sentence of prose around the list does not.
    """
    wanted = [_words(item) - {"&", "and"} for item in expected]
    vocabulary = set().union(*wanted) if wanted else set()
    for item in universe or []:
        vocabulary |= _words(item)
    items = [_words(part) for part in _SPLIT.split(_MARKER.sub(" ", answer))]
    items = [item for item in items if item & vocabulary]
    if not wanted:
        return 1.0 if not items else 0.0
    matched = 0
    used: set[int] = set()
    for want in wanted:
        for i, item in enumerate(items):
            if i not in used and want <= item:
                used.add(i)
                matched += 1
                break
    if not matched:
        return 0.0
    precision, recall = matched / len(items), matched / len(wanted)
    return round(2 * precision * recall / (precision + recall), 6)


def score(scoring: str, answer: str, expected: str | list[str], question: str = "",
          universe: list[str] | None = None) -> float:  # fmt: skip
    """The score in [0, 1] of `answer` under `scoring`."""
    if scoring == "exact":
        options = expected if isinstance(expected, list) else [expected]
        return max(score_exact(answer, e) for e in options)
    if scoring == "regex":
        return score_regex(answer, str(expected))
    if scoring == "number":
        return score_number(answer, str(expected), question)
    if scoring == "set":
        return score_set(answer, expected if isinstance(expected, list) else [expected], universe)
    raise ValueError(f"unknown scoring {scoring!r}: choose from {', '.join(SCORINGS)}")
