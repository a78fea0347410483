"""Search queries that have broken search engines: a table of nasty inputs and seeded random ones."""

from __future__ import annotations

import random

NASTY = [
    '"',
    '""""',
    '"a" "b',
    "(",
    ")",
    "((((a",
    "a))))",
    "()()",
    "(AND)",
    "AND OR NOT",
    "NEAR",
    "NEAR(",
    "NEAR()",
    "NEAR(,5)",
    "NEAR(a",
    "NEAR(a b, 5",
    "NEAR(a b, 99999999999999999999999)",
    "NEAR(a, b)",
    "NEAR(a NEAR(b))",
    "*",
    "**a**",
    "a*b*",
    '"a"**',
    "^a",
    "a + b",
    "-a",
    "a -b",
    "{a b}: c",
    "a:",
    ":a",
    "col:a OR col2:b",
    "a NOT",
    "NOT a",
    "a OR OR OR",
    "'",
    "''''",
    "\\",
    "a\\b",
    "\u200b",
    "\U0001f600 emoji",
    "中文 搜索",
    "ﬁnance",
    "e\u0301",
    "\x00",
    "a\x00\"b",
    "%_'; DROP TABLE t; --",
    "' OR 1=1 --",
    "a" * 3000,
    "(" * 500 + "a" + ")" * 10,
    '"' * 501,
    " ".join(["a OR"] * 300),
]


def fuzzed(count: int, seed: int = 13) -> list[str]:
    """Random strings from the characters FTS5 gives meaning to, with operators mixed in."""
    rnd = random.Random(seed)
    pieces = list('ab Z9"()*-:^+,.@$\'{}\\/\x00é中_\t') + ["AND ", "OR ", "NOT ", "NEAR(", ", 3)", "NEAR "]
    return ["".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 16))) for _ in range(count)]
