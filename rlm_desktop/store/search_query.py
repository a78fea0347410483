"""What a user types into a search box, turned into an FTS5 query that SQLite always accepts.

Everything a user writes is searched the way the index was built: the tokenizer (unicode61) splits text
at every character that is not a letter or a digit, so `stefan@datenfreihafen.org`, `FAA-2020-0686`,
`O'Brien`, `$50,000`, `U.S.` and `C++` are searched as the phrases of their letters and digits
("stefan datenfreihafen org", "faa 2020 0686", "o brien", "50 000", "u s", "c"). Each word is sent as an
FTS5 string, never as syntax, so no character of it can be read as an operator or a column name.

Advanced syntax keeps its FTS5 meaning where it is used: "quoted phrases", AND / OR / NOT (upper case;
lower case they are words), NEAR(a b, 5), prefix*, and parentheses. What cannot mean syntax is read as
words: an operator with nothing on one side ("AND", "a OR") is searched as the word; an unclosed quote
or parenthesis is closed at the end; a ")" with no "(" is ignored. Only a query with nothing to search
for, and a NEAR(...) that cannot be read, raise InvalidQuery, with a message in words.

Only the standard library: the sandboxed REPL worker imports this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

OPERATORS = ("AND", "OR", "NOT")
SYNTAX_HELP = 'words, "exact phrases", AND / OR / NOT, NEAR(word word, 10), prefix*, (groups)'
_TOKEN_CHARS = re.compile(r"[^\W_]+")  # runs of letters and digits: what unicode61 indexes
_NEAR_DISTANCE = re.compile(r",\s*(\d+)\s*\)")
_NEAR_BAD_DISTANCE = re.compile(r",\s*([^\s)]*)\s*\)?")
_THOUSANDS = re.compile(r"\d,\d{3}(?!\d)")  # 50,000: a digit, a comma, three digits


class InvalidQuery(ValueError):
    """The search query cannot be searched; the message says why, in words."""


@dataclass(frozen=True)
class Phrase:
    """A word or phrase as the user wrote it (searched as an FTS5 string), optionally a prefix."""

    text: str
    prefix: bool = False

    @property
    def words(self) -> list[str]:
        return _TOKEN_CHARS.findall(self.text)

    def fts(self) -> str:
        # an FTS5 string: its text is split into words by the index's own tokenizer, so it matches exactly
        # what was indexed; a quote inside is doubled, and a NUL would end the query early
        inner = self.text.replace("\x00", " ").replace('"', '""')
        return '"' + inner + '"' + (" *" if self.prefix else "")


@dataclass(frozen=True)
class Near:
    phrases: tuple[Phrase, ...]
    distance: int | None = None

    def fts(self) -> str:
        if len(self.phrases) == 1:
            return self.phrases[0].fts()
        inner = " ".join(p.fts() for p in self.phrases)
        return f"NEAR({inner}, {self.distance})" if self.distance is not None else f"NEAR({inner})"


@dataclass(frozen=True)
class Operator:
    name: str  # AND, OR, NOT


@dataclass
class Group:
    items: list[Phrase | Near | Operator | Group] = field(default_factory=list)

    def fts(self) -> str:
        return " ".join(_item_fts(item) for item in self.items)


def _item_fts(item: Phrase | Near | Operator | Group) -> str:
    if isinstance(item, Operator):
        return item.name
    if isinstance(item, Group):
        return "(" + item.fts() + ")"
    return item.fts()


@dataclass(frozen=True)
class ParsedQuery:
    """A user's query, parsed: `fts` is the FTS5 MATCH expression; `terms` the words to mark in snippets."""

    text: str
    fts: str
    terms: tuple[tuple[str, bool], ...]  # (word, is_prefix)


def parse_query(text: str) -> ParsedQuery:
    """Parse what a user typed into a safe FTS5 query (see the module docstring for the rules)."""
    if not isinstance(text, str):
        raise InvalidQuery("the search query must be text")
    if not text.strip():
        raise InvalidQuery("the search query is empty: type a word, a name, a number or a phrase")
    group = _Parser(text).parse()
    group = _repair(group)
    if not group.items:
        raise InvalidQuery(
            f"nothing to search for in {text.strip()!r}: search needs at least one letter or digit "
            "(punctuation and symbols alone are not indexed)"
        )
    terms: list[tuple[str, bool]] = []
    _collect_terms(group, terms)
    return ParsedQuery(text, group.fts(), tuple(dict.fromkeys(terms)))


def fts_query(text: str) -> str:
    """The FTS5 MATCH expression for what a user typed."""
    return parse_query(text).fts


class _Parser:
    """Reads the text once, left to right, into nested groups; quotes and parentheses may be unbalanced."""

    def __init__(self, text: str):
        self.text = text
        self.at = 0

    def parse(self) -> Group:
        stack = [Group()]
        text, n = self.text, len(self.text)
        while self.at < n:
            char = text[self.at]
            if char.isspace():
                self.at += 1
            elif char == '"':
                phrase = self._quoted()
                stack[-1].items.append(phrase)
            elif char == "(":
                self.at += 1
                group = Group()
                stack[-1].items.append(group)
                stack.append(group)
            elif char == ")":
                self.at += 1
                if len(stack) > 1:  # a ")" with no "(" before it closes nothing: ignored
                    stack.pop()
            else:
                word = self._bare()
                if word in OPERATORS:
                    stack[-1].items.append(Operator(word))
                elif word == "NEAR" and self.at < n and text[self.at] == "(":
                    self.at += 1
                    stack[-1].items.append(self._near())
                else:
                    stack[-1].items.append(_bare_phrase(word))
        return stack[0]

    def _quoted(self) -> Phrase:
        """A "phrase" (an unclosed one runs to the end); a * right after it makes its last word a prefix."""
        end = self.text.find('"', self.at + 1)
        if end == -1:
            end = len(self.text)
        inner = self.text[self.at + 1 : end]
        self.at = end + 1
        prefix = False
        while self.at < len(self.text) and self.text[self.at] == "*":
            prefix = True
            self.at += 1
        return Phrase(inner, prefix)

    def _bare(self) -> str:
        start = self.at
        while self.at < len(self.text) and not (self.text[self.at].isspace() or self.text[self.at] in '"()'):
            self.at += 1
        return self.text[start : self.at]

    def _near(self) -> Near:
        """NEAR( phrases [, distance] ): only words and "phrases" inside, an optional whole-number distance."""
        phrases: list[Phrase] = []
        distance: int | None = None
        text, n = self.text, len(self.text)
        while self.at < n:
            char = text[self.at]
            if char.isspace():
                self.at += 1
            elif char == ")":
                self.at += 1
                break
            elif char == '"':
                phrases.append(self._quoted())
            elif char == "(":
                raise InvalidQuery(
                    "NEAR(...) takes only words and \"phrases\", not groups in parentheses: "
                    "write NEAR(wire transfer, 10)"
                )
            elif char == ",":
                found = _NEAR_DISTANCE.match(text, self.at)
                if found is None:
                    bad = _NEAR_BAD_DISTANCE.match(text, self.at)
                    what = repr(bad.group(1)) if bad and bad.group(1) else "nothing"
                    raise InvalidQuery(
                        f"the distance in NEAR(...) must be a whole number, not {what}: "
                        "write NEAR(wire transfer, 10) for the words at most 10 words apart"
                    )
                distance = int(found.group(1))
                self.at = found.end()
                break
            else:
                start = self.at
                while self.at < n and not (text[self.at].isspace() or text[self.at] in '"(),'):
                    self.at += 1
                word = text[start : self.at]
                # a comma inside a word ($50,000, a,b) is part of it; one before a space or a distance is not
                while self.at < n and text[self.at] == "," and _comma_in_word(text, self.at):
                    self.at += 1
                    more = self.at
                    while self.at < n and not (text[self.at].isspace() or text[self.at] in '"(),'):
                        self.at += 1
                    word += "," + text[more : self.at]
                if word:
                    phrases.append(_bare_phrase(word))
        kept = tuple(p for p in phrases if p.words)
        if distance is not None and distance > 1_000_000:
            distance = 1_000_000  # FTS5 takes any int; a huge one means "anywhere in the passage" anyway
        return Near(kept, distance)


def _comma_in_word(text: str, at: int) -> bool:
    """Is the comma at `at`, inside NEAR(...), part of a word rather than the one before the distance?"""
    following = text[at + 1 : at + 2]
    if not following or following.isspace() or following in '"(),':
        return False
    if _THOUSANDS.match(text, at - 1):
        return True  # NEAR(wire $50,000): an amount, not a distance of 0
    return not _NEAR_DISTANCE.match(text, at)


def _bare_phrase(word: str) -> Phrase:
    """A bare word; a trailing * makes it a prefix (fina* finds finance, financial)."""
    prefix = word.endswith("*")
    return Phrase(word.rstrip("*"), prefix and bool(_TOKEN_CHARS.search(word.rstrip("*"))))


def _repair(group: Group) -> Group:
    """Drop what has nothing to search (empty phrases and groups); an operator with no term on one side,
    or right after another operator, is searched as a word."""
    items: list[Phrase | Near | Operator | Group] = []
    for item in group.items:
        if isinstance(item, Group):
            item = _repair(item)
            if not item.items:
                continue
        elif isinstance(item, Phrase) and not item.words or isinstance(item, Near) and not item.phrases:
            continue
        items.append(item)
    fixed: list[Phrase | Near | Operator | Group] = []
    for i, item in enumerate(items):
        if isinstance(item, Operator):
            after_term = bool(fixed) and not isinstance(fixed[-1], Operator)
            before_term = i + 1 < len(items)  # whatever follows is a term, or an operator read as a word
            if not (after_term and before_term):
                item = Phrase(item.name)
        if fixed and (isinstance(item, Group) or isinstance(fixed[-1], Group)) and not (
            isinstance(item, Operator) or isinstance(fixed[-1], Operator)
        ):
            fixed.append(Operator("AND"))  # FTS5 puts no implicit AND next to a parenthesis
        fixed.append(item)
    if len(fixed) == 1 and isinstance(fixed[0], Group):
        return fixed[0]  # ((a b)) is (a b)
    return Group(fixed)


def _collect_terms(item: Phrase | Near | Operator | Group, terms: list[tuple[str, bool]]) -> None:
    if isinstance(item, Group):
        for child in item.items:
            _collect_terms(child, terms)
    elif isinstance(item, Near):
        for phrase in item.phrases:
            _collect_terms(phrase, terms)
    elif isinstance(item, Phrase):
        words = item.words
        for i, word in enumerate(words):
            terms.append((word, item.prefix and i == len(words) - 1))
