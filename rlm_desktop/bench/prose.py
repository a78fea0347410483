"""Deterministic, realistic-looking prose for generated corpora (benchmarks and `bench`): Zipf words, names, amounts and dates."""

from __future__ import annotations

import itertools
import random


def _split(words: str) -> list[str]:
    return words.split()


COMMON = _split("""
the of and to a in that is was he for it with as his on be at by i this had not are but from or have an
they which one you were her all she there would their we him been has when who will more no if out so said
what up its about into than them can only other new some could time these two may then do first any my now
such like our over man me even most made after also did many before must through back years where much your
way well down should because each just those people how too little state good very make world still own see
men work long get here between both life being under never day same another know while last might us great
old year off come since against go came right used take three agreement contract payment invoice account
board meeting report transfer company director shares budget review client matter counsel audit schedule
delivery shipment quarter revenue loss claim notice party parties terms clause section exhibit amendment
approval signature evidence record records statement witness office bank wire fund funds project property
lease tenant vendor supplier order purchase price value market risk policy compliance regulation memo draft
final copy attached please regards thanks confirm call discuss following update pending issue issues
""")
FIRST_NAMES = _split("""James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard
Susan Joseph Jessica Thomas Sarah Charles Karen Maria Ahmed Wei Yuki Olga Pierre Ingrid Mateo Priya Kwame Fatima
Lars Chiara Dmitri Amara Hiroshi Sofia Tomasz Aisha Diego Nadia Henrik Leila Rafael Mei Oskar""")
LAST_NAMES = _split("""Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Wilson
Anderson Thomas Taylor Moore Jackson Martin Lee Okafor Nakamura Kowalski Dubois Lindqvist Rossi Petrov Haddad
Mensah Chen Novak Silva Fischer Ivanova Tanaka Oyelaran Bergstrom Castillo Mahmoud Sato Jensen Moreau""")
COMPANIES = _split("""Northwind Globex Initech Umbrella Vandelay Acme Hooli Stark Wayne Cyberdyne Soylent Tyrell Wonka
Oscorp Aperture Gringotts Dunder Prestige Monarch Pinnacle Meridian Sterling Halcyon Bluewater""")
SUFFIXES = ["Ltd", "LLC", "GmbH", "Holdings", "Partners", "Inc.", "S.A.", "Group"]
MONTHS = _split("January February March April May June July August September October November December")
_ONSETS = ["b", "br", "c", "ch", "d", "dr", "f", "fl", "g", "gr", "h", "k", "l", "m", "n", "p", "pl", "pr"]
_ONSETS += ["r", "s", "sh", "sl", "st", "t", "tr", "v", "w", "z"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou"]
_CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "rt"]
SYNTHETIC_WORDS = 30000  # a long tail of rare words, as a real collection has (names, jargon, typos)


def _vocabulary() -> list[str]:
    """Common English words first, then synthetic words (no 'q', 'x' or 'j': needles use those)."""
    rng = random.Random("vocabulary")  # fixed: the vocabulary never depends on the run's seed
    words = list(dict.fromkeys(COMMON))
    seen = set(words)
    while len(words) < len(COMMON) + SYNTHETIC_WORDS:
        syllables = rng.choice((1, 2, 2, 2, 3, 3))
        word = "".join(
            rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


VOCABULARY = _vocabulary()
# Zipf-like weights: the ~300 common words make about 70% of the text, as in English; the tail is long.
_CUM_WEIGHTS = list(itertools.accumulate(1.0 / (rank + 2.7) ** 1.2 for rank in range(len(VOCABULARY))))


class Prose:
    """Sentences and paragraphs from one seeded random stream."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def words(self, n: int) -> list[str]:
        return self.rng.choices(VOCABULARY, cum_weights=_CUM_WEIGHTS, k=n)

    def person(self) -> str:
        return f"{self.rng.choice(FIRST_NAMES)} {self.rng.choice(LAST_NAMES)}"

    def company(self) -> str:
        return f"{self.rng.choice(COMPANIES)} {self.rng.choice(SUFFIXES)}"

    def amount(self) -> str:
        value = self.rng.randrange(100, 5_000_000_00)
        return f"${value // 100:,}.{value % 100:02d}"

    def date(self) -> str:
        year, month, day = self.rng.randrange(2014, 2024), self.rng.randrange(12), self.rng.randrange(1, 29)
        if self.rng.random() < 0.5:
            return f"{MONTHS[month]} {day}, {year}"
        return f"{year}-{month + 1:02d}-{day:02d}"

    def entity(self) -> str:
        roll = self.rng.random()
        if roll < 0.4:
            return self.person()
        if roll < 0.6:
            return self.company()
        if roll < 0.8:
            return self.amount()
        return self.date()

    def sentence(self) -> str:
        rng = self.rng
        words = self.words(rng.randrange(6, 22))
        if rng.random() < 0.45:
            words[rng.randrange(1, len(words))] = self.entity()
        words[0] = words[0].capitalize()
        if rng.random() < 0.15:
            words[rng.randrange(1, len(words))] += ","
        return " ".join(words) + rng.choice("....?;")[:1].replace(";", ".")

    def paragraph(self, sentences: int | None = None) -> str:
        count = sentences if sentences is not None else self.rng.randrange(2, 8)
        return " ".join(self.sentence() for _ in range(count))

    def title(self) -> str:
        words = self.words(self.rng.randrange(3, 8))
        return " ".join(word.capitalize() for word in words)


def wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap by character count (textwrap is several times slower on megabytes)."""
    lines: list[str] = []
    line: list[str] = []
    length = -1
    for word in text.split(" "):
        if length + 1 + len(word) > width and line:
            lines.append(" ".join(line))
            line, length = [], -1
        line.append(word)
        length += 1 + len(word)
    if line:
        lines.append(" ".join(line))
    return lines
